// The engine's part of mars resize: disk reports on attach and on request, primaries grown.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import type { Attached, AttachSpec } from "../../../src/engine/attach.ts";
import { diskReportOf, DiskSizes } from "../../../src/engine/disk-sizes.ts";
import { MarsError } from "../../../src/lib/errors.ts";
import type { Storage } from "../../../src/platform/types.ts";

const mib = 1024 * 1024;

function setup() {
  let nowMs = 1000;
  const map = new MetadataMap("alpha", new LamportClock(() => nowMs++));
  const diskBytes = new Map<string, number>([["/disks/alpha.img", 32 * mib]]);
  const storage = {
    files: {
      status: async (path: string) => {
        const sizeBytes = diskBytes.get(path);
        return sizeBytes === undefined ? undefined
          : { sizeBytes, isDirectory: false, isBlockDevice: false, modifiedMs: 0 };
      },
    },
  } as unknown as Storage;
  const grown: number[] = [];
  let growFailure: MarsError | undefined;
  let problem = "";
  const handle: Attached = {
    exportAddress: "nbd+unix:///r1",
    grow: async (sizeBytes) => {
      await Bun.sleep(5);
      if (growFailure) throw growFailure;
      grown.push(sizeBytes);
      return problem;
    },
    detach: async () => {},
  };
  const sizes = new DiskSizes(map, "alpha", storage, { log: () => {} });
  const attacher = sizes.attacher({ attach: async () => handle });
  map.set(keys.resourceMember("r1", "alpha"), { disk: "/disks/alpha.img" });
  map.set(keys.size("r1"), 32 * mib);
  const spec: AttachSpec = {
    resource: "r1", host: "alpha", disk: "/disks/alpha.img", sizeBytes: 32 * mib,
    primary: true, socketPath: "/run/r1.sock", logDirectory: "/home/r1",
  };
  const report = () => diskReportOf((key) => map.get(key), "r1", "alpha");
  return {
    map, diskBytes, grown, attacher, spec, report,
    failGrowth: (error: MarsError | undefined) => { growFailure = error; },
    kernelProblem: (text: string) => { problem = text; },
  };
}

async function settle(): Promise<void> {
  await Bun.sleep(30);
}

test("an attached primary publishes its disk and export, and grows with the size key", async () => {
  const world = setup();
  const attached = await world.attacher.attach(world.spec);
  await settle();
  expect(world.report()).toEqual(
    { diskBytes: 32 * mib, request: "", exportedBytes: 32 * mib, problem: "" });
  world.diskBytes.set("/disks/alpha.img", 64 * mib);
  world.map.set(keys.size("r1"), 48 * mib);
  world.map.set(keys.size("r1"), 64 * mib);
  world.map.set(keys.size("r1"), 40 * mib); // an older, smaller size: never a shrink
  await settle();
  expect(world.grown).toEqual([48 * mib, 64 * mib]);
  expect(world.report()).toMatchObject({ diskBytes: 64 * mib, exportedBytes: 64 * mib });
  await attached.detach();
  world.map.set(keys.size("r1"), 80 * mib);
  await settle();
  expect(world.grown).toEqual([48 * mib, 64 * mib]);
});

test("a failed growth is published; a kernel problem is published with the growth", async () => {
  const world = setup();
  await world.attacher.attach(world.spec);
  world.failGrowth(new MarsError("disk-too-small", "disk /disks/alpha.img has 32 MiB"));
  world.map.set(keys.size("r1"), 64 * mib);
  await settle();
  expect(world.report()).toMatchObject({ exportedBytes: 32 * mib,
    problem: "disk /disks/alpha.img has 32 MiB" });
  world.failGrowth(undefined);
  world.kernelProblem("the kernel device kept its earlier size");
  world.map.set(keys.size("r1"), 48 * mib);
  await settle();
  expect(world.report()).toMatchObject({ exportedBytes: 48 * mib,
    problem: "the kernel device kept its earlier size" });
});

test("a measure request is answered by members only, with the disk's size now", async () => {
  const world = setup();
  world.diskBytes.set("/disks/alpha.img", 96 * mib);
  world.map.set(keys.measureDisks("r1"), "beta-1");
  await settle();
  expect(world.report()).toEqual(
    { diskBytes: 96 * mib, request: "beta-1", exportedBytes: null, problem: "" });
  // beta's request for r2, which alpha is no member of.
  world.map.apply({ key: keys.resourceMember("r2", "beta"), value: { disk: "/b.img" },
    time: 5000, host: "beta", seq: 1 });
  world.map.apply({ key: keys.measureDisks("r2"), value: "beta-2", time: 5001, host: "beta",
    seq: 2 });
  expect(world.map.get(keys.measureDisks("r2"))).toBe("beta-2");
  await settle();
  expect(world.map.get(keys.disk("r2", "alpha"))).toBeUndefined();
});

test("a size key lower than the primary's export is written back up (two resizes at once)",
  async () => {
    const world = setup();
    world.map.apply({ key: keys.resourceMember("r1", "beta"), value: { disk: "/b.img" },
      time: 500, host: "beta", seq: 1 });
    await world.attacher.attach(world.spec);
    world.diskBytes.set("/disks/alpha.img", 64 * mib);
    world.map.set(keys.size("r1"), 64 * mib);
    // Another member's resize planned against the old 32 MiB, stamped later: it wins the key,
    // while clients of the export may already use the range up to 64 MiB.
    world.map.apply({ key: keys.size("r1"), value: 48 * mib, time: 9001, host: "beta", seq: 2 });
    await settle();
    expect(world.grown).toEqual([64 * mib]);
    // A restart attaches with the size key: it must not export less than was exported.
    expect(world.map.get(keys.size("r1"))).toBe(64 * mib);
  });

test("a smaller size of a resource re-created under the same name is not written back up",
  async () => {
    const world = setup();
    await world.attacher.attach(world.spec);
    world.diskBytes.set("/disks/alpha.img", 64 * mib);
    world.map.set(keys.size("r1"), 64 * mib);
    await settle();
    expect(world.grown).toEqual([64 * mib]);
    // r1 deleted and created again by gamma, whose membership is newer than the growth; the
    // tombstone of alpha's membership is still on its way (held by a relay, say).
    world.map.apply({ key: keys.resourceMember("r1", "gamma"), value: { disk: "/g.img" },
      time: 9000, host: "gamma", seq: 1 });
    world.map.apply({ key: keys.size("r1"), value: 16 * mib, time: 9001, host: "gamma",
      seq: 2 });
    await settle();
    expect(world.map.get(keys.size("r1"))).toBe(16 * mib);
  });
