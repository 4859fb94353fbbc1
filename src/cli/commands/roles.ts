/** `mars primary [--force]` and `mars secondary`: planned handover, failover, no primary. */
import { defineCommand } from "citty";
import { keys } from "../../cluster/keys.ts";
import type { KeyWrite } from "../../engine/control.ts";
import { isMarsError, MarsError } from "../../lib/errors.ts";
import { comparePositions, positionText, type LogPosition } from "../../log/position.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { dryRunArg, dryRunLine } from "../lifecycle.ts";
import { distanceText, replicaProblem, RoleView, waitFor } from "../roles-state.ts";

const resourceArg = {
  type: "positional", required: true, valueHint: "RES",
  description: "Resource, comma list or 'all'",
} as const;

export const primary = defineCommand({
  meta: { name: "primary", description: "Make this host primary: handover, or --force failover" },
  args: {
    resource: resourceArg,
    force: { type: "boolean", description: "Failover: take over without the old primary" },
    "wait-closed": { type: "boolean",
      description: "Wait for the old primary's device to be closed instead of refusing" },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const deadlineMs = Date.now() + options.timeoutSeconds * 1000;
      for (const resource of admin.resources(args.resource)) {
        if (!admin.membersOf(resource).includes(admin.host)) {
          throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
        }
        const step = { admin, resource, deadlineMs, dryRun: args["dry-run"] === true };
        if (args.force) await failover(step);
        else await handover({ ...step, waitClosed: args["wait-closed"] === true });
      }
    });
  },
});

interface Step {
  readonly admin: AdminSession;
  readonly resource: string;
  readonly deadlineMs: number;
  readonly dryRun: boolean;
}

function requireEngine(admin: AdminSession, what: string): void {
  if (!admin.engineRunning) {
    throw new MarsError("engine", `the engine is not running on this host (mars run): ${what}`);
  }
}

/** Planned handover (docs/roles.md): nothing the old primary wrote is lost. */
async function handover(step: Step & { readonly waitClosed: boolean }): Promise<void> {
  const { admin, resource } = step;
  requireEngine(admin, "a handover needs the live state of every member");
  let view = new RoleView(await admin.refresh());
  const old = view.primaryOf(resource);
  if (old === admin.host) {
    console.log(`${resource}: ${admin.host} is already primary`);
    return;
  }
  if (old !== "" && !step.waitClosed && openersOf(view, resource, old).length > 0) {
    // A device closed just now is published within a few hundred milliseconds.
    const graceEndMs = Math.min(step.deadlineMs, Date.now() + closeGraceMs);
    view = await waitFor(admin, graceEndMs, "", (next) =>
      openersOf(next, resource, old).length === 0 ? next : undefined).catch(() => view);
  }
  phase0Check(step, view, old);
  if (step.dryRun) {
    console.log(`${resource}: handover ${old || "(no primary)"} → ${admin.host} would proceed`);
    return;
  }
  const started = Date.now();
  if (old !== "") {
    await admin.write([{ key: keys.handover(resource),
      value: { from: old, to: admin.host, startedMs: started } }]);
    try {
      const closedEnd = await phase1OldPrimaryCloses(step, old);
      await phase2FetchAll(step, closedEnd);
    } catch (error) {
      // The old primary exports again (it is still designated).
      await admin.write([{ key: keys.handover(resource) }]);
      throw error;
    }
  }
  await admin.write([{ key: keys.primary(resource), value: admin.host },
    { key: keys.handover(resource) }]);
  const exported = await phase3Export(step);
  console.log(`${resource}: handover ${old || "(no primary)"} → ${admin.host} done in ` +
    `${Date.now() - started} ms; exported at ${exported}`);
}

/** How long a device seen open may take to be seen closed before a handover is refused. */
const closeGraceMs = 1500;

/** Who has `host`'s device open: NBD clients of its socket, holders of its /dev/nbdN. */
function openersOf(view: RoleView, resource: string, host: string): string[] {
  const actual = view.actual(resource, host);
  const connections = actual?.openConnections ?? 0;
  const holders = Array.isArray(actual?.deviceHolders) ? actual.deviceHolders.map(String) : [];
  return [...(connections > 0 ? [`${connections} NBD connection(s)`] : []), ...holders];
}

function deviceOpenRefusal(resource: string, host: string, openers: readonly string[]) {
  return new MarsError("refused", `${resource}: the device is still open on ${host} ` +
    `(${openers.join("; ")}): close it there first, or use --wait-closed`);
}

/** Phase 0: preconditions; each refusal says which one failed. */
function phase0Check(step: Step & { readonly waitClosed: boolean }, view: RoleView, old: string) {
  const { admin, resource } = step;
  const report = view.report(resource, admin.host);
  const problem = replicaProblem(resource, admin.host, report);
  if (problem) throw problem;
  if (old === "") return checkLastPrimary(step, view, report?.fetched ?? null);
  if (!view.alive(old)) {
    throw new MarsError("refused", `${resource}: the primary ${old} is unreachable; a planned ` +
      "handover needs it (mars primary --force for a failover)");
  }
  const openers = openersOf(view, resource, old);
  if (openers.length > 0 && !step.waitClosed) throw deviceOpenRefusal(resource, old, openers);
}

/**
 * Without a designated primary nobody serves the log: this host must already have all of what
 * the last primary wrote (its published `closedLogEnd`), or nothing would bring it here.
 */
function checkLastPrimary(step: Step, view: RoleView, fetched: LogPosition | null): void {
  const { admin, resource } = step;
  for (const host of admin.membersOf(resource)) {
    const closed = view.actual(resource, host)?.closedLogEnd;
    if (host === admin.host || !closed) continue;
    if (!fetched || comparePositions(fetched, closed) < 0) {
      throw new MarsError("refused", `${resource}: ${host}'s log ends at ` +
        `${positionText(closed)} but ${admin.host} has ` +
        `${fetched ? positionText(fetched) : "none"}: make ${host} primary again ` +
        "(mars primary there), or mars primary --force here");
    }
  }
}

/**
 * Phase 1: the old primary stops exporting once its device is closed and closes its log. Its
 * look right before stepping down may find a holder the periodic one missed (a device opened
 * just now, a lazily unmounted file system): that is a refusal unless told to wait.
 */
async function phase1OldPrimaryCloses(
  step: Step & { readonly waitClosed: boolean }, old: string,
): Promise<LogPosition> {
  const { admin, resource } = step;
  let reachable = true;
  try {
    return await waitFor(admin, step.deadlineMs, `${old} to close ${resource} and its log`,
      (view) => {
        const actual = view.actual(resource, old);
        reachable = view.alive(old);
        if (!actual || actual.export !== "" || !actual.closedLogEnd) {
          const openers = openersOf(view, resource, old);
          if (openers.length > 0 && !step.waitClosed) {
            throw deviceOpenRefusal(resource, old, openers);
          }
          return undefined;
        }
        return actual.closedLogEnd;
      });
  } catch (error) {
    // A restarted old primary still completes the handover (its closed end is persisted), so
    // an unreachable one is waited for; at the timeout, say what is left to do.
    if (!isMarsError(error) || error.code !== "timeout" || reachable) throw error;
    throw new MarsError("timeout", `${error.message} (${old} is unreachable: run this again ` +
      "once it is back, or mars primary --force for a failover)");
  }
}

/** Phase 2: this host has fetched every byte of the old primary's log (replay follows). */
async function phase2FetchAll(step: Step, closedEnd: LogPosition): Promise<void> {
  const { admin, resource } = step;
  await waitFor(admin, step.deadlineMs,
    `${admin.host} to fetch ${resource} up to ${positionText(closedEnd)}`, (view) => {
      const report = view.report(resource, admin.host);
      // Synced at phase 0: a full sync starting now (its log gone at the source) cannot
      // finish while nobody exports, so the handover stops (and the old primary exports again).
      const problem = replicaProblem(resource, admin.host, report);
      if (problem) throw problem;
      const fetched = report?.fetched;
      return fetched && comparePositions(fetched, closedEnd) >= 0 ? true : undefined;
    });
}

/** Phase 3: this host replays the rest, opens the next logfile of the chain and exports. */
async function phase3Export(step: Step): Promise<string> {
  const { admin, resource } = step;
  return waitFor(admin, step.deadlineMs, `${admin.host} to export ${resource}`, (view) => {
    const actual = view.actual(resource, admin.host);
    if (actual?.error) throw new MarsError("engine", `${resource}: ${actual.error}`);
    return actual?.primary && actual.export ? actual.export : undefined;
  });
}

/** Failover: take over with what is here; says how much of the old primary's log is missing. */
async function failover(step: Step): Promise<void> {
  const { admin, resource } = step;
  const view = admin.engineRunning ? new RoleView(await admin.refresh()) : undefined;
  const old = view?.primaryOf(resource) ?? String(admin.map.get(keys.primary(resource)) ?? "");
  if (old === admin.host) {
    console.log(`${resource}: ${admin.host} is already primary`);
    return;
  }
  const report = view?.report(resource, admin.host);
  if (report && (report.status === "syncing" || !report.consistent)) {
    throw new MarsError("refused", `${resource}: ${admin.host} is a sync target (inconsistent)` +
      "; it cannot take over");
  }
  const known = view && old ? view.report(resource, old) : undefined;
  const missing = distanceText(report?.fetched ?? null, known?.fetched ?? known?.logEnd ?? null);
  if (step.dryRun) {
    console.log(`${resource}: failover ${old || "(no primary)"} → ${admin.host} would proceed;` +
      ` not fetched of ${old || "the old primary"}'s known log: ${missing}`);
    return;
  }
  const writes: KeyWrite[] = [{ key: keys.primary(resource), value: admin.host },
    { key: keys.handover(resource) }];
  await admin.write(writes);
  console.log(`${resource}: failover to ${admin.host}; not fetched of ` +
    `${old || "the old primary"}'s known log: ${missing}`);
  if (!admin.engineRunning) {
    console.log(engineDownNote);
    return;
  }
  console.log(`${resource}: exported at ${await phase3Export(step)}`);
}

export const secondary = defineCommand({
  meta: { name: "secondary", description: "Leave the resource without a designated primary" },
  args: {
    resource: resourceArg,
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const deadlineMs = Date.now() + options.timeoutSeconds * 1000;
      for (const resource of admin.resources(args.resource)) {
        const current = admin.map.get(keys.primary(resource));
        if (current !== admin.host) {
          throw new MarsError("refused", `${resource}: ${admin.host} is not its primary ` +
            `(${current || "no primary"})`);
        }
        if (args["dry-run"]) {
          console.log(dryRunLine(`${resource}: ${admin.host} would stop exporting and leave ` +
            "the resource without a primary"));
          continue;
        }
        await admin.write([{ key: keys.primary(resource), value: "" }]);
        if (!admin.engineRunning) {
          console.log(engineDownNote);
          continue;
        }
        await waitFor(admin, deadlineMs, `${resource} to be closed (its device is open)`,
          (view) => view.actual(resource, admin.host)?.export === "" ? true : undefined);
        console.log(`${resource}: ${admin.host} is secondary; no host is primary`);
      }
    });
  },
});
