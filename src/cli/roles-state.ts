/** What the role commands read from a running engine: reports, actual states, waiting. */
import { keys } from "../cluster/keys.ts";
import type { ControlState } from "../engine/control.ts";
import type { ActualState } from "../engine/resources.ts";
import { MarsError } from "../lib/errors.ts";
import { comparePositions, positionText, type LogPosition } from "../log/position.ts";
import { asReport, type ReplicationReport } from "../replication/report.ts";
import type { AdminSession } from "./admin.ts";

/** How often the engine's state is read while a role command waits. */
export const rolePollIntervalMs = 200;

/** One snapshot of the engine's view, with typed look-ups. */
export class RoleView {
  private readonly values = new Map<string, unknown>();

  constructor(readonly state: ControlState) {
    for (const entry of state.entries) {
      if (!entry.deleted) this.values.set(entry.key, entry.value);
    }
  }

  get(key: string): unknown {
    return this.values.get(key);
  }

  primaryOf(resource: string): string {
    const primary = this.get(keys.primary(resource));
    return typeof primary === "string" ? primary : "";
  }

  report(resource: string, host: string): ReplicationReport | undefined {
    return asReport(this.get(keys.replication(resource, host)));
  }

  actual(resource: string, host: string): Partial<ActualState> | undefined {
    const value = this.get(keys.actual(resource, host));
    return typeof value === "object" && value !== null ? value as Partial<ActualState> : undefined;
  }

  alive(host: string): boolean {
    return host === this.state.host || this.state.peers[host]?.alive === true;
  }
}

/** Polls the engine until `check` returns a result (not undefined), or the timeout passes. */
export async function waitFor<T>(
  admin: AdminSession, deadlineMs: number, what: string,
  check: (view: RoleView) => T | undefined,
): Promise<T> {
  for (;;) {
    const view = new RoleView(await admin.refresh());
    const result = check(view);
    if (result !== undefined) return result;
    if (Date.now() >= deadlineMs) throw new MarsError("timeout", `timed out: ${what}`);
    await new Promise((resolve) => setTimeout(resolve, rolePollIntervalMs));
  }
}

/** The replica states that refuse a role change, as the error a command ends with. */
export function replicaProblem(
  resource: string, host: string, report: ReplicationReport | undefined,
) {
  if (!report) {
    return new MarsError("refused", `${resource} on ${host}: no replication state yet`);
  }
  const detail = report.problem ? `: ${report.problem}` : "";
  if (report.status === "split-brain") {
    return new MarsError("split-brain", `${resource} on ${host}: split brain${detail}`);
  }
  if (report.status === "defective") {
    return new MarsError("defective-log", `${resource} on ${host}: replay error${detail}`);
  }
  if (report.status === "syncing" || !report.consistent) {
    const percent = report.syncPercent === null ? "" : ` (${report.syncPercent} %)`;
    return new MarsError("refused",
      `${resource} on ${host}: not synced, a full sync runs${percent}; mars wait-sync first`);
  }
  return undefined;
}

/** Bytes from `from` to `to` when both are in the same logfile; otherwise a description. */
export function distanceText(from: LogPosition | null, to: LogPosition | null): string {
  if (!from || !to) return "unknown (no position published)";
  if (comparePositions(from, to) >= 0) return "0 bytes";
  if (from.sequence === to.sequence) return `${to.offsetBytes - from.offsetBytes} bytes`;
  return `from ${positionText(from)} to ${positionText(to)}`;
}
