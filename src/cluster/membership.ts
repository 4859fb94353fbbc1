/** Who may write which key about a resource: its members only (docs/cluster.md, "Membership"). */
import { keys, parseKey } from "./keys.ts";
import { compareStamps, type Stamp } from "./lamport.ts";

/** What the map knows of one key, as far as the rule needs it. */
export interface KnownEntry {
  readonly value: unknown;
  readonly stamp: Stamp;
}

export type EntryOf = (key: string) => KnownEntry | undefined;

/**
 * `accept`: apply it. `refuse`: never (malformed key, or another host's owned key set).
 * `hold`: not now — its author is not known as a member of the resource; kept aside and judged
 * again whenever that author's membership changes (it may simply not have arrived yet).
 */
export type Verdict =
  | { readonly kind: "accept" }
  | { readonly kind: "refuse" | "hold"; readonly reason: string };

const accepted: Verdict = { kind: "accept" };

/**
 * The rule for an entry learned from a peer, decided on its original author (the stamp's host,
 * never the peer that relayed it). It depends only on the entry and on the author's membership
 * entry, so every host reaches the same verdict once it holds the same membership entry:
 * - keys about no resource: global ones from anyone, owned ones from their owner;
 * - a host's own keys about a resource (its membership: joining and leaving) from that host;
 * - a resource's global keys, and deletions of another host's keys of it (a forced removal),
 *   from a member of the resource.
 * An author counts as a member for an entry when its membership is live, or was deleted after
 * the entry was written, or was deleted by another host (a forced removal the author may not
 * have known of when it wrote: refusing would leave hosts that accepted it earlier disagreeing).
 */
export function remoteVerdict(
  entryOf: EntryOf, key: string, stamp: Stamp, deleted: boolean,
): Verdict {
  const shape = parseKey(key);
  if (!shape) return { kind: "refuse", reason: "malformed or unknown key" };
  const author = stamp.host;
  if (shape.owner === author) return accepted;
  if (shape.owner !== undefined && (!deleted || shape.resource === undefined)) {
    return { kind: "refuse", reason: `the key is owned by ${shape.owner}` };
  }
  if (shape.resource === undefined) return accepted;
  const membership = entryOf(keys.resourceMember(shape.resource, author));
  if (membership?.value !== undefined) return accepted;
  if (membership && (compareStamps(membership.stamp, stamp) > 0 ||
    membership.stamp.host !== author)) return accepted;
  return { kind: "hold", reason: `${author} is not a member of ${shape.resource}` };
}

/**
 * The rule for this host's own writes, stricter than for remote ones: about a resource, only
 * while this host's membership is live (its own keys excepted: joining writes one).
 */
export function localProblem(entryOf: EntryOf, key: string, host: string,
  deleting: boolean): string | undefined {
  const shape = parseKey(key);
  if (!shape) return `'${key}' is no valid key`;
  if (shape.owner === host) return undefined;
  if (shape.owner !== undefined && (!deleting || shape.resource === undefined)) {
    return `'${key}' is owned by ${shape.owner}`;
  }
  if (shape.resource === undefined) return undefined;
  if (entryOf(keys.resourceMember(shape.resource, host))?.value !== undefined) return undefined;
  return `${host} is not a member of ${shape.resource}`;
}

/** The resource a membership key names (`resource/R/member/HOST`), else undefined. */
export function membershipResource(key: string): string | undefined {
  const shape = parseKey(key);
  return shape?.kind === "member" && shape.resource !== undefined ? shape.resource : undefined;
}

/**
 * Membership tombstones are kept while their resource exists: the rule judges an old entry of a
 * departed member by them (purged, the member would look like a stranger to a new host).
 */
export function tombstoneRetained(entryOf: EntryOf, key: string): boolean {
  const resource = membershipResource(key);
  return resource !== undefined && entryOf(keys.size(resource))?.value !== undefined;
}
