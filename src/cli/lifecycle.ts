/** The writes of leaving and deleting a resource, ordered as the membership rule needs them. */
import { keys, parseKey } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import type { KeyWrite } from "../engine/control.ts";
import { MarsError } from "../lib/errors.ts";
import type { AdminSession } from "./admin.ts";

/** Every live key of `resource` that concerns `host` (its switches and its own keys). */
function hostKeysOf(map: MetadataMap, resource: string, host: string): string[] {
  const found: string[] = [];
  for (const entry of map.list(`resource/${resource}/`)) {
    const shape = parseKey(entry.key);
    const isTodo = entry.key.startsWith(`resource/${resource}/todo/${host}/`);
    if (isTodo || shape?.owner === host) found.push(entry.key);
  }
  return found;
}

/**
 * `host` stops being a member of `resource`: its switches and reports go, then (last, so the
 * writer is still a member for the others) its membership. A designated primary leaves the
 * resource without one.
 */
export function leaveWrites(map: MetadataMap, resource: string, host: string): KeyWrite[] {
  const membership = keys.resourceMember(resource, host);
  const writes: KeyWrite[] = hostKeysOf(map, resource, host)
    .filter((key) => key !== membership).map((key) => ({ key }));
  if (map.get(keys.primary(resource)) === host) {
    writes.push({ key: keys.primary(resource), value: "" });
  }
  const handover = map.get(keys.handover(resource)) as { from?: string; to?: string } | undefined;
  if (handover?.from === host || handover?.to === host) {
    writes.push({ key: keys.handover(resource) });
  }
  writes.push({ key: membership });
  return writes;
}

/** Placeholder membership a non-member writes for the moment it deletes a resource. */
const deletingMembership = { disk: "", deleting: true };

/**
 * Forgets `resource` cluster-wide: every live key of it. A writer that is not a member (every
 * member left) joins for the moment, since only members may write about a resource.
 */
export function forgetWrites(map: MetadataMap, resource: string, writer: string): KeyWrite[] {
  const own = keys.resourceMember(resource, writer);
  const size = keys.size(resource);
  const writes: KeyWrite[] = [];
  if (map.get(own) === undefined) writes.push({ key: own, value: deletingMembership });
  for (const entry of map.list(`resource/${resource}/`)) {
    if (entry.key !== own && entry.key !== size) writes.push({ key: entry.key });
  }
  writes.push({ key: size }, { key: own });
  return writes;
}

/** Refuses (exit 4) removing `host` while its engine is heard from: it should leave itself. */
export function requireNotAlive(admin: AdminSession, host: string, how: string): void {
  const peer = admin.state?.peers[host];
  if (peer?.alive) {
    throw new MarsError("refused", `${host} is alive (heard from ${peer.heardAgoMs} ms ago): ` +
      `run ${how} on ${host} itself`);
  }
}

/** `--dry-run` as every state-changing command declares it. */
export const dryRunArg = {
  type: "boolean", description: "Check and say what would happen; change nothing",
} as const;

/** The line a dry run prints before saying what would happen. */
export function dryRunLine(text: string): string {
  return `dry run: ${text} (nothing changed)`;
}
