/** Resource lifecycle: create-resource, join-resource, leave-resource, delete-resource. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { checkName, keys, switchNames } from "../../cluster/keys.ts";
import { claimDisk } from "../../engine/attach.ts";
import type { KeyWrite } from "../../engine/control.ts";
import type { DiskReport } from "../../engine/disk-sizes.ts";
import type { ActualState } from "../../engine/resources.ts";
import { absolutePath } from "../../platform/host-name.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { dryRunArg, dryRunLine, forgetWrites, leaveWrites, requireNotAlive } from "../lifecycle.ts";

/** How long create-resource waits for the engine to report the export. */
export const exportWaitMs = 10_000;
/** How long create/join wait for the engine to set aside an earlier resource's directory. */
export const leftoverWaitMs = 5_000;

const resourceArg = {
  type: "positional", required: true, valueHint: "RES", description: "Resource name",
} as const;
const diskArg = {
  type: "positional", required: true, valueHint: "DISK",
  description: "Backing block device or file",
} as const;

/** BYTES with an optional K/M/G/T (binary) suffix; `what` names the argument in errors. */
export function parseSize(text: unknown, what = "--size"): number | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)([KMGT]?)$/i.exec(String(text));
  if (!match) {
    throw new MarsError("usage", `${what} takes BYTES (K/M/G/T suffix ok), not '${text}'`);
  }
  const factor = 1024 ** " KMGT".indexOf((match[2] || " ").toUpperCase());
  const bytes = Number(match[1]) * factor;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new MarsError("usage", `${what} is too big`);
  }
  return bytes;
}

/** Checks the disk (exists, big enough, not in use) and returns its size. */
async function checkDisk(admin: AdminSession, disk: string, sizeBytes: number) {
  const claimed = await claimDisk(admin.effects, disk, sizeBytes);
  await claimed.lock.release();
  return claimed.sizeBytes;
}

/** This host's disk size, as `mars resize` reads it (the engine measures it again on attach). */
function diskWrite(resource: string, host: string, diskBytes: number): KeyWrite {
  const report: DiskReport = { diskBytes, request: "", exportedBytes: null, problem: "" };
  return { key: keys.disk(resource, host), value: report };
}

function switchWrites(resource: string, host: string, on: boolean): KeyWrite[] {
  return switchNames.map((name) => ({ key: keys.todo(resource, host, name), value: on }));
}

/** Waits until this host's engine reports the resource attached; returns the export. */
async function waitForExport(admin: AdminSession, resource: string, timeoutMs: number) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const state = await admin.refresh();
    const key = keys.actual(resource, admin.host);
    const actual = state.entries.find((entry) => entry.key === key)?.value as
      ActualState | undefined;
    if (actual?.attached) return actual.export;
    if (actual?.error) throw new MarsError("engine", `attach failed: ${actual.error}`);
    if (Date.now() >= deadline) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/**
 * HOME/resources/RES left by an earlier resource of this name (its logfiles, replay position,
 * sync cursor) must never be taken over by a new one. The engine sets it aside once it sees
 * this host's membership end; with the engine down this command does (it holds the home's
 * lock). Refused when it stays (docs/home-layout.md).
 */
async function setAsideLeftover(admin: AdminSession, resource: string, dryRun: boolean) {
  const path = await admin.home.existingResourceDirectory(resource);
  if (!path) return;
  if (!admin.engineRunning) {
    if (dryRun) {
      console.log(dryRunLine(`would set aside ${path}, the state of an earlier ${resource}`));
    } else await sayAside(admin, resource);
    return;
  }
  const deadline = Date.now() + leftoverWaitMs;
  while (await admin.home.existingResourceDirectory(resource)) {
    if (dryRun || Date.now() >= deadline) {
      throw new MarsError("refused", `${path} holds the local state (logfiles, positions) of ` +
        `an earlier resource ${resource} that the engine has not set aside: move it out of ` +
        `the way (e.g. into ${admin.home.path}/deleted/) and run this again`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Sets aside RES's directory (the engine is down: this command holds the home's lock). */
async function sayAside(admin: AdminSession, resource: string): Promise<void> {
  const aside = await admin.home.setAsideResource(resource, Date.now());
  if (aside) console.log(`${resource}: the local state of ${admin.host} went to ${aside}`);
}

export const createResource = defineCommand({
  meta: { name: "create-resource", description: "Create a resource; this host becomes primary" },
  args: {
    resource: resourceArg, disk: diskArg,
    size: {
      type: "string", valueHint: "BYTES", description: "Resource size (default: the disk's)",
    },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const resource = checkName("resource", args.resource);
    const disk = absolutePath(args.disk);
    const wanted = parseSize(args.size);
    await withAdmin(options, async (admin) => {
      if (admin.map.get(keys.size(resource)) !== undefined) {
        throw new MarsError("refused", `resource '${resource}' already exists`);
      }
      const diskBytes = await checkDisk(admin, disk, wanted ?? 1);
      const sizeBytes = wanted ?? diskBytes;
      await setAsideLeftover(admin, resource, args["dry-run"] === true);
      if (args["dry-run"]) {
        console.log(dryRunLine(`would create resource ${resource} (${sizeBytes} bytes on ` +
          `${disk}) with ${admin.host} as primary`));
        return;
      }
      // The membership first: only a member may write the resource's other keys.
      await admin.write([
        { key: keys.resourceMember(resource, admin.host), value: { disk } },
        { key: keys.size(resource), value: sizeBytes },
        diskWrite(resource, admin.host, diskBytes),
        { key: keys.primary(resource), value: admin.host },
        ...switchWrites(resource, admin.host, true),
      ]);
      const waitMs = Math.min(exportWaitMs, options.timeoutSeconds * 1000);
      const exported = admin.engineRunning
        ? await waitForExport(admin, resource, waitMs)
        : undefined;
      if (options.json) {
        console.log(JSON.stringify({ resource, sizeBytes, disk, primary: admin.host,
          export: exported ?? null, engineRunning: admin.engineRunning }));
        return;
      }
      console.log(`created resource ${resource} (${sizeBytes} bytes on ${disk}); ` +
        `${admin.host} is primary`);
      if (exported) console.log(`export: ${exported}`);
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});

export const joinResource = defineCommand({
  meta: { name: "join-resource", description: "Become a secondary of a resource" },
  args: { resource: resourceArg, disk: diskArg, "dry-run": dryRunArg },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const resource = checkName("resource", args.resource);
    const disk = absolutePath(args.disk);
    await withAdmin(options, async (admin) => {
      admin.requireResource(resource);
      if (admin.membersOf(resource).includes(admin.host)) {
        throw new MarsError("refused", `${admin.host} is already a member of ${resource}`);
      }
      const sizeBytes = admin.map.get(keys.size(resource)) as number;
      const diskBytes = await checkDisk(admin, disk, sizeBytes);
      await setAsideLeftover(admin, resource, args["dry-run"] === true);
      if (args["dry-run"]) {
        console.log(dryRunLine(`${admin.host} would join resource ${resource} as a secondary ` +
          `(disk ${disk}) and full-sync it from the primary`));
        return;
      }
      await admin.write([
        { key: keys.resourceMember(resource, admin.host), value: { disk } },
        diskWrite(resource, admin.host, diskBytes),
        ...switchWrites(resource, admin.host, true),
      ]);
      console.log(`${admin.host} joined resource ${resource} as a secondary (disk ${disk});` +
        " the full sync arrives with the replication engine");
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});

export const leaveResource = defineCommand({
  meta: { name: "leave-resource", description: "Stop being a member; the disk is left as is" },
  args: {
    resource: resourceArg,
    host: { type: "string", valueHint: "NAME",
      description: "Remove this (dead) host's membership instead (needs --force)" },
    force: { type: "boolean",
      description: "Leave even as primary; with --host: remove another host" },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const target = typeof args.host === "string" ? checkName("host", args.host) : admin.host;
      const writes: KeyWrite[] = [];
      const said: string[] = [];
      const left = admin.memberResources(args.resource, target);
      for (const resource of left) {
        const leave = target === admin.host
          ? checkLeaveSelf(admin, resource, args.force === true)
          : checkRemoveOther(admin, resource, target, args.force === true);
        writes.push(...leaveWrites(admin.map, resource, target));
        const dry = args["dry-run"] === true;
        const verb = target === admin.host ? (dry ? "would leave" : "left")
          : (dry ? "would be removed from" : "was removed from");
        const line = `${target} ${verb} resource ${resource}` +
          (leave.wasPrimary ? ` (${resource} ${dry ? "would have" : "has"} no primary)` : "");
        said.push(dry ? dryRunLine(line) : line);
      }
      if (args["dry-run"]) {
        for (const line of said) console.log(line);
        return;
      }
      await admin.write(writes);
      for (const line of said) console.log(line);
      if (!admin.engineRunning && target === admin.host) {
        for (const resource of left) await sayAside(admin, resource);
      }
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});

function checkLeaveSelf(admin: AdminSession, resource: string, force: boolean) {
  if (!admin.membersOf(resource).includes(admin.host)) {
    throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
  }
  const wasPrimary = admin.map.get(keys.primary(resource)) === admin.host;
  if (wasPrimary && !force) {
    throw new MarsError("refused", `${admin.host} is the primary of ${resource}: ` +
      "make another host primary first (or --force)");
  }
  return { wasPrimary };
}

/** `leave-resource RES --host NAME --force`: a member removes a dead host's membership. */
function checkRemoveOther(admin: AdminSession, resource: string, target: string, force: boolean) {
  const members = admin.membersOf(resource);
  if (!members.includes(target)) {
    const known = admin.map.get(keys.member(target)) !== undefined;
    throw new MarsError(known ? "refused" : "unknown-host", known
      ? `${target} is not a member of ${resource}`
      : `host '${target}' is neither a cluster member nor a member of ${resource}`);
  }
  if (!force) {
    throw new MarsError("refused", `removing ${target} from ${resource} needs --force ` +
      "(it is for a dead host; a live one runs leave-resource itself)");
  }
  if (!members.includes(admin.host)) {
    throw new MarsError("refused", `only a member of ${resource} may remove another: ` +
      `${admin.host} is not one`);
  }
  requireNotAlive(admin, target, `leave-resource ${resource}`);
  return { wasPrimary: admin.map.get(keys.primary(resource)) === target };
}

export const deleteResource = defineCommand({
  meta: { name: "delete-resource", description: "Forget a resource once no member is left" },
  args: {
    resource: resourceArg,
    force: { type: "boolean",
      description: "Even while other members remain (their disks are left as they are)" },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const writes: KeyWrite[] = [];
      const said: string[] = [];
      const deleted = admin.resources(args.resource);
      for (const resource of deleted) {
        const others = admin.membersOf(resource).filter((host) => host !== admin.host);
        if (others.length > 0 && !args.force) {
          throw new MarsError("refused", `${resource} still has members ${others.join(",")}: ` +
            "they leave-resource first (or delete-resource --force)");
        }
        writes.push(...forgetWrites(admin.map, resource, admin.host));
        said.push(`deleted resource ${resource}` +
          (others.length > 0 ? ` (members ${others.join(",")} removed; disks untouched)` : ""));
      }
      if (args["dry-run"]) {
        for (const line of said) console.log(dryRunLine(`would have ${line}`));
        return;
      }
      await admin.write(writes);
      for (const line of said) console.log(line);
      if (!admin.engineRunning) {
        for (const resource of deleted) await sayAside(admin, resource);
      }
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});
