/** The conditions `wait-resource` waits for, judged on this host's published state. */
import { keys } from "../cluster/keys.ts";
import { MarsError } from "../lib/errors.ts";
import type { RoleView } from "./roles-state.ts";

export const resourceConditions = [
  "attached", "detached", "primary", "secondary", "device-closed", "consistent",
] as const;
export type ResourceCondition = (typeof resourceConditions)[number];

export function parseCondition(text: string): ResourceCondition {
  const known = (resourceConditions as readonly string[]).includes(text);
  if (!known) {
    throw new MarsError("usage",
      `unknown condition '${text}': one of ${resourceConditions.join(", ")}`);
  }
  return text as ResourceCondition;
}

/**
 * What has the device open on `host`, as its engine last published it: NBD connections, and
 * what holds the kernel device (/dev/nbdN) open.
 */
export function openUsers(view: RoleView, resource: string, host: string): string[] {
  const actual = view.actual(resource, host);
  if (!actual?.export) return [];
  const connections = actual.openConnections ?? 0;
  const holders = Array.isArray(actual.deviceHolders) ? actual.deviceHolders.map(String) : [];
  return [...(connections > 0 ? [`${connections} connection(s)`] : []), ...holders];
}

/**
 * Whether `condition` holds for `resource` on `host`, and a short word on the state otherwise.
 * A split brain or a defective log ends a wait for `consistent` (it will not come by itself).
 */
export function conditionState(
  view: RoleView, resource: string, host: string, condition: ResourceCondition,
): { readonly holds: boolean; readonly state: string } {
  const actual = view.actual(resource, host);
  const report = view.report(resource, host);
  switch (condition) {
    case "attached":
      return { holds: actual?.attached === true, state: actual?.error || "not attached" };
    case "detached":
      return { holds: actual?.attached !== true, state: "attached" };
    case "primary":
      return { holds: actual?.primary === true && Boolean(actual.export),
        state: `primary is ${view.primaryOf(resource) || "(none)"}, not exported here` };
    case "secondary":
      return { holds: actual?.primary !== true && view.primaryOf(resource) !== host,
        state: "this host is primary" };
    case "device-closed": {
      const users = openUsers(view, resource, host);
      return { holds: users.length === 0, state: `open: ${users.join(", ")}` };
    }
    case "consistent": {
      if (report?.status === "split-brain") {
        throw new MarsError("split-brain", `${resource} on ${host}: split brain`);
      }
      if (report?.status === "defective") {
        throw new MarsError("defective-log", `${resource} on ${host}: replay error`);
      }
      const state = report ? `${report.status}, inconsistent` : "no replication state yet";
      return { holds: report?.consistent === true, state };
    }
  }
}

/** Resources of `names` whose condition does not hold yet, each with its state. */
export function pendingResources(
  view: RoleView, names: readonly string[], host: string, condition: ResourceCondition,
): string[] {
  const pending: string[] = [];
  for (const resource of names) {
    if (view.get(keys.size(resource)) === undefined) {
      throw new MarsError("unknown-resource", `resource '${resource}' was deleted`);
    }
    const { holds, state } = conditionState(view, resource, host, condition);
    if (!holds) pending.push(`${resource} (${state})`);
  }
  return pending;
}
