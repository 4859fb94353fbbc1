/** `mars wait-sync`: until replicas are consistent and replayed up to the log end at call time. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { keys } from "../../cluster/keys.ts";
import type { LogPosition } from "../../log/position.ts";
import { comparePositions, positionText } from "../../log/position.ts";
import {
  asReport, lagSeconds, replicaReached, terminalCode, type ReplicationReport,
} from "../../replication/report.ts";
import { askEngine } from "../control-client.ts";
import { withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { homeFiles } from "../../store/home.ts";
import { resourceNames } from "../../engine/resources.ts";

/** How often the engine's state is read while waiting. */
const pollIntervalMs = 200;
/**
 * A terminal state (split brain, emergency, defective) ends the wait only once it has been seen
 * this long: reports are published every 500 ms, so a state just repaired (a re-fetch after
 * resume-fetch) may still show in the last report.
 */
const terminalGraceMs = 1500;
const progressBarColumns = 30;

/** A target that is the last end reported here, not one the primary named. */
interface EstimatedTarget {
  readonly resource: string;
  readonly target: LogPosition;
  readonly reason: string;
}

interface Waited {
  readonly resource: string;
  readonly host: string;
  readonly target: LogPosition;
}

export const waitSync = defineCommand({
  meta: {
    name: "wait-sync",
    description: "Wait until replicas are consistent and replayed up to the primary's position",
  },
  args: {
    resource: { type: "positional", required: false, valueHint: "RES",
      description: "Resource, comma list or 'all' (default: all)" },
    all: { type: "boolean", description: "Wait for every member's replica, not only this host's" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      if (!admin.engineRunning) {
        throw new MarsError("engine", "the engine is not running on this host (mars run)");
      }
      const names = args.resource ? admin.resources(args.resource) : resourceNames(admin.map);
      const deadline = Date.now() + options.timeoutSeconds * 1000;
      const printer = new Printer(options.json, process.stderr.isTTY === true);
      const waited = await targetsWhenKnown(admin, names, args.all === true, printer, deadline);
      for (;;) {
        const state = await admin.refresh();
        const reports = new Map<string, ReplicationReport | undefined>();
        pendingInvalidations.clear();
        for (const entry of state.entries) {
          if (entry.key.includes("/replication/")) reports.set(entry.key, asReport(entry.value));
          if (entry.key.includes("/split-brain/")) heldSplits.set(entry.key, entry.value);
          if (entry.key.includes("/invalidate/") && !entry.deleted) {
            pendingInvalidations.add(entry.key);
          }
        }
        const pending = judge(waited, reports, printer);
        if (pending.length === 0) {
          printer.done(waited.length);
          return;
        }
        if (Date.now() >= deadline) {
          printer.finish();
          throw new MarsError("timeout", `not synced: ${pending.map((item) =>
            `${item.resource} on ${item.host}`).join(", ")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
      }
    });
  },
});

/**
 * The targets, asked again while a designated primary cannot name its position yet: right after
 * `join-resource` the primary does not know the joiner until the membership reaches it.
 */
async function targetsWhenKnown(
  admin: AdminSession, names: string[], all: boolean, printer: Printer, deadline: number,
): Promise<Waited[]> {
  for (;;) {
    const outcome = await targets(admin, names, all);
    if ("waited" in outcome) {
      // Said once, for the targets that stand: not again on every retry.
      for (const { resource, target, reason } of outcome.estimated) {
        printer.estimatedTarget(resource, target, reason);
      }
      return outcome.waited;
    }
    if (Date.now() >= deadline) throw new MarsError("timeout", outcome.unknown);
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}

/**
 * Each waited replica with the log position it must reach: the primary's log end when the call
 * began, which the engine asks the primary for. When it cannot (the primary unreachable), the
 * last end reported here stands in, and is returned in `estimated`: that target may be up to a
 * report interval old.
 */
async function targets(
  admin: AdminSession, names: string[], all: boolean,
): Promise<{ waited: Waited[]; estimated: EstimatedTarget[] } | { unknown: string }> {
  const hostsOf = new Map<string, string[]>();
  for (const resource of names) {
    const primary = admin.map.get(keys.primary(resource));
    const hosts = admin.membersOf(resource).filter((host) => host !== primary &&
      (all || host === admin.host));
    if (hosts.length > 0) hostsOf.set(resource, hosts);
  }
  // Only the resources waited for: the engine asks each one's primary.
  const reply = await askEngine(admin.effects.network, admin.home.file(homeFiles.control),
    { op: "positions", resources: [...hostsOf.keys()] });
  const known = reply.ok ? reply.positions ?? {} : {};
  const estimated = reply.ok ? reply.estimated ?? {} : {};
  const waited: Waited[] = [];
  const estimatedTargets: EstimatedTarget[] = [];
  for (const [resource, hosts] of hostsOf) {
    const primary = admin.map.get(keys.primary(resource));
    let target = known[resource];
    const reason = estimated[resource];
    if (reason !== undefined || !target) {
      const published = typeof primary === "string" && primary !== ""
        ? asReport(admin.map.get(keys.replication(resource, primary)))?.logEnd ?? undefined
        : undefined;
      target = [target, published].filter((item) => item !== undefined)
        .sort((left, right) => comparePositions(right, left))[0];
      if (!target) {
        const why = `${resource}: no primary log position is known ` +
          `(${reason ?? "no designated primary, or it has not reported yet"})`;
        // Without a designated primary there is nothing to wait for; otherwise it may come.
        if (typeof primary !== "string" || primary === "") throw new MarsError("refused", why);
        return { unknown: why };
      }
      estimatedTargets.push({ resource, target, reason: reason ?? "the engine did not say" });
    }
    for (const host of hosts) waited.push({ resource, host, target });
  }
  return { waited, estimated: estimatedTargets };
}

/** Split brains found and held (pause-sync) by members: wait-sync ends with exit 5. */
const heldSplits = new Map<string, unknown>();

/**
 * Replicas whose invalidation is requested and not yet begun: their last report (emergency,
 * defective) is about to be replaced by a sync's, so it ends nothing.
 */
const pendingInvalidations = new Set<string>();

/** Since when each replica has shown its current terminal state. */
const terminalSince = new Map<string, { code: string; sinceMs: number }>();

function judge(
  waited: readonly Waited[], reports: Map<string, ReplicationReport | undefined>,
  printer: Printer,
): Waited[] {
  const pending: Waited[] = [];
  for (const item of waited) {
    const report = reports.get(keys.replication(item.resource, item.host));
    printer.observe(item, report);
    const id = `${item.resource}@${item.host}`;
    const held = heldSplits.get(keys.splitBrain(item.resource, item.host)) as
      { repairStartedMs?: number | null; reason?: string } | undefined;
    const invalidating = pendingInvalidations.has(keys.invalidate(item.resource, item.host));
    const code = invalidating ? undefined : (report ? terminalCode(report) : undefined) ??
      (held && held.repairStartedMs === null ? "split-brain" as const : undefined);
    const seen = terminalSince.get(id);
    if (!code) terminalSince.delete(id);
    else if (seen?.code !== code) terminalSince.set(id, { code, sinceMs: Date.now() });
    if (report && code) {
      if (Date.now() - terminalSince.get(id)!.sinceMs >= terminalGraceMs) {
        printer.finish();
        throw new MarsError(code, `${item.resource} on ${item.host}: ${report.status}` +
          (report.problem ? `: ${report.problem}` : held?.reason ? `: ${held.reason}` : ""));
      }
    }
    if (invalidating || !report || !replicaReached(report, item.target)) pending.push(item);
  }
  printer.render(pending.map((item) => reports.get(keys.replication(item.resource, item.host))));
  return pending;
}

/** Progress on a terminal; one line (or JSON object) per state change otherwise. */
class Printer {
  private readonly seen = new Map<string, string>();
  private startLagBytes = 0;
  private drawn = false;

  constructor(private readonly json: boolean, private readonly terminal: boolean) {}

  observe(item: Waited, report: ReplicationReport | undefined): void {
    const id = `${item.resource}@${item.host}`;
    const state = report ? `${report.status}${report.consistent ? "" : " inconsistent"}`
      : "no report";
    if (this.seen.get(id) === state) return;
    this.seen.set(id, state);
    if (this.terminal && !this.json) return;
    const replayed = report?.replayed ? positionText(report.replayed) : null;
    if (this.json) {
      console.log(JSON.stringify({
        resource: item.resource, host: item.host, status: report?.status ?? null,
        consistent: report?.consistent ?? null, replayed: report?.replayed ?? null,
        target: item.target, replayLagBytes: report?.replayLagBytes ?? null,
      }));
    } else {
      console.log(`${item.resource} on ${item.host}: ${state}` +
        (replayed ? ` replayed=${replayed} target=${positionText(item.target)}` : ""));
    }
  }

  /** The primary could not be asked: the target is the last end reported here. */
  estimatedTarget(resource: string, target: LogPosition, reason: string): void {
    if (this.json) {
      console.log(JSON.stringify({ resource, target, targetExact: false, reason }));
    } else {
      process.stderr.write(`${resource}: waiting for ${positionText(target)}, the last log end ` +
        `reported here (the primary was not asked: ${reason})\n`);
    }
  }

  render(pending: readonly (ReplicationReport | undefined)[]): void {
    if (!this.terminal || this.json) return;
    const lagBytes = pending.reduce((sum, report) => sum + (report?.replayLagBytes ?? 0), 0);
    const rate = pending.reduce((sum, report) => sum + (report?.replayRateBytesPerSecond ?? 0),
      0);
    this.startLagBytes = Math.max(this.startLagBytes, lagBytes);
    const fraction = this.startLagBytes === 0 ? 0 : 1 - lagBytes / this.startLagBytes;
    const filled = Math.round(fraction * progressBarColumns);
    const eta = lagSeconds(lagBytes, rate);
    const bar = `[${"#".repeat(filled)}${".".repeat(progressBarColumns - filled)}]`;
    process.stderr.write(`\r${bar} ${(fraction * 100).toFixed(0).padStart(3)}% ` +
      `${(rate / 1048576).toFixed(1)} MiB/s ETA ${eta === null ? "?" : `${eta}s`}   `);
    this.drawn = true;
  }

  finish(): void {
    if (this.drawn) process.stderr.write("\n");
    this.drawn = false;
  }

  done(count: number): void {
    this.finish();
    if (this.json) console.log(JSON.stringify({ synced: true, replicas: count }));
    else console.log(`${count} replica${count === 1 ? "" : "s"} in sync`);
  }
}
