// mars resize end to end: a running primary and secondary grow from 32 to 64 MiB, data beyond.
import { afterAll, expect, test } from "bun:test";
import {
  closeSync, openSync, readFileSync, readSync, statSync, truncateSync, writeSync,
} from "node:fs";
import { stopAllEngines } from "../support/engines.ts";
import { runTool } from "../support/nbd-serve.ts";
import {
  diskDigests, fioWrite, replicationCluster, removeTestRoots, testRoot, viewJson,
} from "../support/replication-cluster.ts";

const mib = 1024 * 1024;

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

test("resize while running: refusals, growth, new clients see it, replicas follow", async () => {
  const root = testRoot("mars-e2e-resize-");
  const cluster = await replicationCluster(root, ["alpha", "beta"], { sizeBytes: 32 * mib });
  const { primary } = cluster;
  const beta = cluster.secondaries[0]!;
  await fioWrite(cluster.uri, "8M", root);

  // alpha's disk grows first: beta's is still too small, and resize names it.
  truncateSync(cluster.disks.alpha!, 64 * mib);
  const tooSmall = await primary.mars("resize", "r1", "64M");
  expect(tooSmall.exitCode).toBe(4);
  expect(tooSmall.stderr).toContain("beta");
  expect(tooSmall.stderr).toContain(String(32 * mib));
  const shrink = await primary.mars("resize", "r1", "16M");
  expect(shrink.exitCode).toBe(4);
  expect(shrink.stderr).toContain("shrinking");
  const usage = await primary.mars("resize", "r1", "64X");
  expect(usage.exitCode).toBe(2);

  truncateSync(cluster.disks.beta!, 64 * mib);
  const dry = await primary.mars("resize", "r1", "--dry-run");
  expect(dry.exitCode).toBe(0);
  expect(dry.stdout).toContain(`would grow from ${32 * mib} to ${64 * mib} bytes`);
  expect((await viewJson(primary)).resources[0].sizeBytes).toBe(32 * mib);

  // Run on the secondary: any member may resize; the primary's engine grows its export.
  const grown = await beta.mars("resize", "r1");
  expect(grown.stderr).toBe("");
  expect(grown.exitCode).toBe(0);
  expect(grown.stdout).toContain(`grows from ${32 * mib} to ${64 * mib} bytes`);
  expect(grown.stdout).toContain(`alpha exports ${64 * mib} bytes`);

  const info = await runTool(["nbdinfo", "--size", cluster.uri]);
  expect(info.stdout.trim()).toBe(String(64 * mib));
  // Beyond the old end: random verified writes in [32 MiB, 64 MiB).
  await fioWrite(cluster.uri, "24M", root, ["--offset=40M"]);
  await fioWrite(cluster.uri, "8M", root, ["--offset=32M"]);
  const waited = await primary.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.exitCode).toBe(0);
  for (const engine of [primary, beta]) {
    expect((await viewJson(engine)).resources[0].sizeBytes).toBe(64 * mib);
    expect((await engine.mars("view")).stdout).toContain("size=64.0MiB");
  }
  const again = await primary.mars("resize", "r1", "64M");
  expect(again.exitCode).toBe(0);
  expect(again.stdout).toContain("stays at");

  expect(await primary.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.beta).toBe(digests.alpha!);
}, 120_000);

test("resize while the engine is down is recorded and acted on at start", async () => {
  const root = testRoot("mars-e2e-resize-down-");
  const cluster = await replicationCluster(root, ["gamma"], { sizeBytes: 16 * mib });
  const { primary } = cluster;
  expect(await primary.stop()).toBe(0);
  truncateSync(cluster.disks.gamma!, 24 * mib);
  const recorded = await primary.mars("resize", "r1");
  expect(recorded.exitCode).toBe(0);
  expect(recorded.stdout).toContain(`grows from ${16 * mib} to ${24 * mib} bytes`);
  expect(recorded.stdout).toContain("it will act on start");
  await primary.start();
  const info = await runTool(["nbdinfo", "--size", cluster.uri]);
  expect(info.stdout.trim()).toBe(String(24 * mib));
  await fioWrite(cluster.uri, "8M", root, ["--offset=16M"]);
}, 60_000);

/** Grows `disk` to `sizeBytes` and fills [fromBytes, sizeBytes) with `pattern` (not zeroes). */
function growWithGarbage(disk: string, fromBytes: number, sizeBytes: number, pattern: number) {
  truncateSync(disk, sizeBytes);
  const garbage = new Uint8Array(sizeBytes - fromBytes);
  for (let index = 0; index < garbage.length; index++) {
    garbage[index] = ((index * pattern) >>> 7 ^ pattern) & 255 || 1;
  }
  const fd = openSync(disk, "r+");
  try {
    writeSync(fd, garbage, 0, garbage.length, fromBytes);
  } finally {
    closeSync(fd);
  }
}

test("the grown range reads as zeroes on every member: disks equal after wait-sync", async () => {
  const root = testRoot("mars-e2e-resize-zeroes-");
  const cluster = await replicationCluster(root, ["delta", "epsilon"], { sizeBytes: 32 * mib });
  const { primary } = cluster;
  const epsilon = cluster.secondaries[0]!;
  await fioWrite(cluster.uri, "4M", root);
  // Each disk holds its own garbage beyond the old end (an old partition's, a file's).
  growWithGarbage(cluster.disks.delta!, 32 * mib, 64 * mib, 0x5a);
  growWithGarbage(cluster.disks.epsilon!, 32 * mib, 64 * mib, 0xc3);
  const grown = await primary.mars("resize", "r1");
  expect(grown.stderr).toBe("");
  expect(grown.exitCode).toBe(0);
  expect(grown.stdout).toContain(`delta exports ${64 * mib} bytes`);
  // A little in the new range; the rest nobody writes.
  await fioWrite(cluster.uri, "1M", root, ["--offset=40M"]);
  const waited = await primary.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.exitCode).toBe(0);
  expect(await primary.stop()).toBe(0);
  expect(await epsilon.stop()).toBe(0);

  const images = [readFileSync(cluster.disks.delta!), readFileSync(cluster.disks.epsilon!)];
  for (const image of images) {
    expect(image.length).toBe(64 * mib);
    const unwritten = [image.subarray(32 * mib, 40 * mib), image.subarray(41 * mib)];
    for (const range of unwritten) expect(range.every((byte) => byte === 0)).toBe(true);
    expect(image.subarray(40 * mib, 41 * mib).some((byte) => byte !== 0)).toBe(true);
  }
  expect(Buffer.compare(images[0]!, images[1]!)).toBe(0);
}, 120_000);

test("a growth by 16 GiB is zeroed on every member without writing 16 GiB", async () => {
  const root = testRoot("mars-e2e-resize-large-");
  const cluster = await replicationCluster(root, ["zeta", "eta"], { sizeBytes: 32 * mib });
  const { primary } = cluster;
  const eta = cluster.secondaries[0]!;
  const sizeBytes = 16 * 1024 * mib + 32 * mib;
  const garbageAt = [5 * 1024 * mib, 12 * 1024 * mib, sizeBytes - mib];
  for (const disk of [cluster.disks.zeta!, cluster.disks.eta!]) {
    truncateSync(disk, sizeBytes);
    const fd = openSync(disk, "r+");
    for (const offset of garbageAt) writeSync(fd, new Uint8Array(mib).fill(0xee), 0, mib, offset);
    closeSync(fd);
  }
  const grown = await primary.mars("resize", "r1");
  expect(grown.stderr).toBe("");
  expect(grown.exitCode).toBe(0);
  const waited = await primary.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.exitCode).toBe(0);
  expect(await primary.stop()).toBe(0);
  expect(await eta.stop()).toBe(0);
  for (const disk of [cluster.disks.zeta!, cluster.disks.eta!]) {
    const fd = openSync(disk, "r");
    const piece = new Uint8Array(mib);
    for (const offset of garbageAt) {
      readSync(fd, piece, 0, mib, offset);
      expect(piece.every((byte) => byte === 0)).toBe(true);
    }
    closeSync(fd);
    // Zeroed by fallocate: the grown range holds no written blocks.
    expect(statSync(disk).blocks * 512).toBeLessThan(256 * mib);
  }
}, 120_000);
