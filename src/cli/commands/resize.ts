/** `mars resize RES [SIZE]`: grow a resource online, as far as every member's disk allows. */
import { defineCommand } from "citty";
import { checkName, keys } from "../../cluster/keys.ts";
import { diskReportOf } from "../../engine/disk-sizes.ts";
import { membershipOf } from "../../engine/resources.ts";
import { MarsError } from "../../lib/errors.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { dryRunArg, dryRunLine } from "../lifecycle.ts";
import { planResize, type MemberDisk } from "../resize-plan.ts";
import { parseSize } from "./resource.ts";

/** How long the members' engines get to measure their disks. */
export const measureWaitMs = 5_000;
/** How long the command waits for the primary to export the new size. */
export const exportWaitMs = 10_000;
const pollIntervalMs = 100;

type Lookup = (key: string) => unknown;

export const resize = defineCommand({
  meta: {
    name: "resize",
    description: "Grow a resource online (default: as far as every member's disk allows)",
  },
  args: {
    resource: { type: "positional", required: true, valueHint: "RES", description: "Resource" },
    size: { type: "positional", required: false, valueHint: "SIZE",
      description: "New size: BYTES, K/M/G/T suffix ok (default: the largest every disk allows)" },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const resource = checkName("resource", args.resource);
    const wanted = parseSize(args.size, "SIZE");
    const dryRun = args["dry-run"] === true;
    await withAdmin(options, async (admin) => {
      admin.requireResource(resource);
      if (!admin.membersOf(resource).includes(admin.host)) {
        throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
      }
      const currentBytes = admin.map.get(keys.size(resource)) as number;
      const waitMs = Math.min(measureWaitMs, options.timeoutSeconds * 1000);
      // A dry run asks for measurements too (a request, no change): it checks what the real
      // command checks.
      const disks = await memberDisks(admin, resource, waitMs);
      const target = planResize(resource, currentBytes, wanted, disks);
      const said = target === currentBytes
        ? `${resource} stays at ${currentBytes} bytes` +
          (wanted === undefined ? " (as large as every member's disk allows)" : "")
        : `${resource} grows from ${currentBytes} to ${target} bytes`;
      const sizes = disks.map((disk) => `${disk.host}=${disk.diskBytes}` +
        (disk.measuredNow ? "" : "(earlier)")).join(" ");
      if (dryRun) {
        console.log(dryRunLine(`${said.replace(" grows ", " would grow ")}; disks: ${sizes}`));
        return;
      }
      if (target === currentBytes) {
        report(options.json, { resource, fromBytes: currentBytes, toBytes: target, said });
        return;
      }
      await admin.write([{ key: keys.size(resource), value: target }]);
      const exported = admin.engineRunning
        ? await waitForExport(admin, resource, target, Math.min(exportWaitMs,
          options.timeoutSeconds * 1000))
        : undefined;
      report(options.json, { resource, fromBytes: currentBytes, toBytes: target, said,
        ...(exported ? { exported } : {}) });
      if (!admin.engineRunning && !options.json) console.log(engineDownNote);
    });
  },
});

function report(json: boolean, result: {
  resource: string; fromBytes: number; toBytes: number; said: string; exported?: string;
}): void {
  if (json) {
    console.log(JSON.stringify({ resource: result.resource, fromBytes: result.fromBytes,
      toBytes: result.toBytes, exported: result.exported ?? null }));
    return;
  }
  console.log(result.said);
  if (result.exported) console.log(result.exported);
}

/**
 * Every member's disk size. This host's is measured here; with the engine running, every
 * member's engine is asked to measure its own (a `measure-disks` request) and given `waitMs`;
 * a member that does not answer in time counts with its last published measurement.
 */
async function memberDisks(
  admin: AdminSession, resource: string, waitMs: number,
): Promise<MemberDisk[]> {
  const members = admin.membersOf(resource);
  let lookup: Lookup = (key) => admin.map.get(key);
  let request = "";
  if (admin.engineRunning && waitMs > 0) {
    request = `${admin.host}-${Math.floor(admin.effects.clock.nowMs())}`;
    await admin.write([{ key: keys.measureDisks(resource), value: request }]);
    const deadline = Date.now() + waitMs;
    for (;;) {
      lookup = lookupOf(await admin.refresh());
      const answered = members.every((host) => host === admin.host ||
        diskReportOf(lookup, resource, host)?.request === request);
      if (answered || Date.now() >= deadline) break;
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
    }
  }
  const disks: MemberDisk[] = [];
  for (const host of members) {
    if (host === admin.host) {
      disks.push({ host, diskBytes: await ownDiskBytes(admin, resource), measuredNow: true });
      continue;
    }
    const published = diskReportOf(lookup, resource, host);
    disks.push({ host, diskBytes: published?.diskBytes,
      measuredNow: request !== "" && published?.request === request });
  }
  return disks;
}

async function ownDiskBytes(admin: AdminSession, resource: string): Promise<number> {
  const disk = membershipOf(admin.map, resource, admin.host)?.disk;
  const status = disk ? await admin.effects.storage.files.status(disk) : undefined;
  if (!status) throw new MarsError("not-found", `disk ${disk} of ${resource} does not exist`);
  return status.sizeBytes;
}

function lookupOf(state: { entries: readonly { key: string; value?: unknown }[] }): Lookup {
  const values = new Map(state.entries.map((entry) => [entry.key, entry.value]));
  return (key) => values.get(key);
}

/** Waits until the designated primary exports `target` bytes; says what it found. */
async function waitForExport(
  admin: AdminSession, resource: string, target: number, waitMs: number,
): Promise<string> {
  const deadline = Date.now() + waitMs;
  for (;;) {
    const lookup = lookupOf(await admin.refresh());
    const primary = lookup(keys.primary(resource));
    if (typeof primary !== "string" || primary === "") {
      return `${resource} has no primary: the next one exports ${target} bytes`;
    }
    const published = diskReportOf(lookup, resource, primary);
    if ((published?.exportedBytes ?? 0) >= target) {
      return `${primary} exports ${target} bytes` +
        (published?.problem ? ` (${published.problem})` : "");
    }
    if (Date.now() >= deadline) {
      return published?.problem
        ? `${primary} has not grown its export: ${published.problem}`
        : `${primary} has not reported the new size yet (its engine grows the export ` +
          "when the size reaches it)";
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
}
