/** Resource lifecycle: create-resource, join-resource, leave-resource, delete-resource. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { checkName, keys, switchNames } from "../../cluster/keys.ts";
import { claimDisk } from "../../engine/attach.ts";
import type { KeyWrite } from "../../engine/control.ts";
import type { ActualState } from "../../engine/resources.ts";
import { absolutePath } from "../../platform/host-name.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";

/** How long create-resource waits for the engine to report the export. */
export const exportWaitMs = 10_000;

const resourceArg = {
  type: "positional", required: true, valueHint: "RES", description: "Resource name",
} as const;
const diskArg = {
  type: "positional", required: true, valueHint: "DISK",
  description: "Backing block device or file",
} as const;

function parseSize(text: unknown): number | undefined {
  if (text === undefined) return undefined;
  const match = /^(\d+)([KMGT]?)$/i.exec(String(text));
  if (!match) throw new MarsError("usage", `--size takes BYTES (K/M/G/T suffix ok), not '${text}'`);
  const factor = 1024 ** " KMGT".indexOf((match[2] || " ").toUpperCase());
  const bytes = Number(match[1]) * factor;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new MarsError("usage", "--size is too big");
  return bytes;
}

/** Checks the disk (exists, big enough, not in use) and returns its size. */
async function checkDisk(admin: AdminSession, disk: string, sizeBytes: number) {
  const claimed = await claimDisk(admin.effects, disk, sizeBytes);
  await claimed.lock.release();
  return claimed.sizeBytes;
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

export const createResource = defineCommand({
  meta: { name: "create-resource", description: "Create a resource; this host becomes primary" },
  args: {
    resource: resourceArg, disk: diskArg,
    size: {
      type: "string", valueHint: "BYTES", description: "Resource size (default: the disk's)",
    },
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
      await admin.write([
        { key: keys.size(resource), value: sizeBytes },
        { key: keys.primary(resource), value: admin.host },
        { key: keys.resourceMember(resource, admin.host), value: { disk } },
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
  args: { resource: resourceArg, disk: diskArg },
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
      await checkDisk(admin, disk, sizeBytes);
      await admin.write([
        { key: keys.resourceMember(resource, admin.host), value: { disk } },
        ...switchWrites(resource, admin.host, true),
      ]);
      console.log(`${admin.host} joined resource ${resource} as a secondary (disk ${disk});` +
        " the full sync arrives with the replication engine");
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});

function leaveWrites(resource: string, host: string): KeyWrite[] {
  return [
    { key: keys.resourceMember(resource, host) },
    { key: keys.actual(resource, host) },
    ...switchNames.map((name) => ({ key: keys.todo(resource, host, name) })),
  ];
}

export const leaveResource = defineCommand({
  meta: { name: "leave-resource", description: "Stop being a member; the disk is left as is" },
  args: { resource: resourceArg, force: { type: "boolean", description: "Even as primary" } },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      for (const resource of admin.resources(args.resource)) {
        if (!admin.membersOf(resource).includes(admin.host)) {
          throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
        }
        const isPrimary = admin.map.get(keys.primary(resource)) === admin.host;
        if (isPrimary && !args.force) {
          throw new MarsError("refused", `${admin.host} is the primary of ${resource}: ` +
            "make another host primary first (or --force)");
        }
        await admin.write([
          ...leaveWrites(resource, admin.host),
          ...(isPrimary ? [{ key: keys.primary(resource), value: "" }] : []),
        ]);
        console.log(`${admin.host} left resource ${resource}`);
      }
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});

export const deleteResource = defineCommand({
  meta: { name: "delete-resource", description: "Forget a resource once no member is left" },
  args: { resource: resourceArg },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      for (const resource of admin.resources(args.resource)) {
        const others = admin.membersOf(resource).filter((host) => host !== admin.host);
        if (others.length > 0) {
          throw new MarsError("refused",
            `${resource} still has members ${others.join(",")}: they leave-resource first`);
        }
        const todo = admin.map.list(`resource/${resource}/todo/`).map((entry) => entry.key);
        await admin.write([
          ...leaveWrites(resource, admin.host),
          ...todo.map((key) => ({ key })),
          { key: keys.primary(resource) },
          { key: keys.size(resource) },
        ]);
        console.log(`deleted resource ${resource}`);
      }
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});
