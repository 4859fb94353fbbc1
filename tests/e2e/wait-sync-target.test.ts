// wait-sync's target is the primary's log end when the call began, asked of the primary: a
// write acknowledged just before it is on the secondary's disk when wait-sync returns.
import { afterAll, expect, test } from "bun:test";
import { openSync, readSync, closeSync } from "node:fs";
import { join } from "node:path";
import { engineHandle, eventually, stopAllEngines } from "../support/engines.ts";
import { runTool } from "../support/nbd-serve.ts";
import {
  blankDisk, replicationCluster, removeTestRoots, testRoot, viewJson,
} from "../support/replication-cluster.ts";
import { WanProxy } from "../support/wan-proxy.ts";

let proxy: WanProxy | undefined;
afterAll(async () => {
  proxy?.stop();
  await stopAllEngines();
  removeTestRoots();
});

const mebibyte = 1024 * 1024;
const rounds = 4;

/** Whether every byte of [offset, offset + length) of `path` is `pattern`. */
function regionHolds(path: string, offset: number, length: number, pattern: number): boolean {
  const buffer = new Uint8Array(length);
  const fd = openSync(path, "r");
  try {
    readSync(fd, buffer, 0, length, offset);
  } finally {
    closeSync(fd);
  }
  return buffer.every((byte) => byte === pattern);
}

test("a write just before wait-sync on the secondary is replayed when it returns", async () => {
  const root = testRoot("mars-e2e-wait-sync-target-");
  const cluster = await replicationCluster(root, ["alpha", "beta"]);
  const { primary } = cluster;
  const beta = cluster.secondaries[0]!;
  // 400 ms RTT to the primary: the end the log stream last reported lags a fresh write by
  // more than wait-sync needs to start, so only an end asked of the primary is exact.
  proxy = new WanProxy({
    targetPort: primary.port, forward: { delayMs: 200 }, backward: { delayMs: 200 },
  }).start();
  const moved = await primary.mars("set-key", `member/${primary.name}`,
    JSON.stringify({ address: `127.0.0.1:${proxy.port}` }));
  expect(moved.exitCode).toBe(0);
  expect(await beta.stop()).toBe(0);
  await beta.start();
  expect((await beta.mars("wait-sync", "--timeout", "60")).exitCode).toBe(0);
  for (let round = 0; round < rounds; round++) {
    const pattern = 0x31 + round;
    const offset = (8 + round * 4) * mebibyte;
    const written = await runTool(["qemu-io", "-f", "raw", "-c",
      `write -P ${pattern} ${offset} 1M`, cluster.uri]);
    expect(written.exitCode).toBe(0);
    const waited = await beta.mars("wait-sync", "--json", "--timeout", "60");
    expect(waited.exitCode).toBe(0);
    expect(waited.stdout).not.toContain("targetExact");
    expect(regionHolds(cluster.disks.beta!, offset, mebibyte, pattern)).toBe(true);
  }
  // The primary gone: the last end reported here stands in, and wait-sync says so.
  expect(await primary.stop()).toBe(0);
  const fallback = await beta.mars("wait-sync", "--timeout", "20");
  expect(fallback.exitCode).toBe(0);
  expect(fallback.stderr).toContain("the primary was not asked");
  expect(await beta.stop()).toBe(0);
}, 120_000);

test("wait-sync right after join-resource on the joiner returns once it is synced", async () => {
  const root = testRoot("mars-e2e-wait-sync-joiner-");
  const cluster = await replicationCluster(root, ["alpha"]);
  const { primary } = cluster;
  const gamma = engineHandle("gamma", root);
  expect((await gamma.mars("join-cluster", `127.0.0.1:${primary.port}`, "--secret-file",
    join(primary.home, "cluster-secret"), "--host", "gamma", "--listen",
    `127.0.0.1:${gamma.port}`)).exitCode).toBe(0);
  await gamma.start();
  await eventually(async () => (await viewJson(gamma)).resources.length === 1, 5_000);
  const disk = blankDisk(root, "gamma", 64 * mebibyte);
  expect((await gamma.mars("join-resource", cluster.resource, disk)).exitCode).toBe(0);
  // At once, as a deploy script does. Should alpha not know gamma yet (its membership still on
  // the way), wait-sync asks again until it does instead of refusing.
  const waited = await gamma.mars("wait-sync", cluster.resource, "--timeout", "60");
  expect(waited.stderr).toBe(waited.exitCode === 0 ? waited.stderr : "exit 0 expected");
  const written = await runTool(["qemu-io", "-f", "raw", "-c",
    `write -P 0x5a ${4 * mebibyte} 1M`, cluster.uri]);
  expect(written.exitCode).toBe(0);
  expect((await gamma.mars("wait-sync", cluster.resource, "--timeout", "60")).exitCode).toBe(0);
  expect(regionHolds(disk, 4 * mebibyte, mebibyte, 0x5a)).toBe(true);
  expect(await gamma.stop()).toBe(0);
  expect(await primary.stop()).toBe(0);
}, 120_000);
