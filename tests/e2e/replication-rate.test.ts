/** The fetch rate limit of `mars run`: a limited replica catches up no faster than allowed. */
import { afterAll, expect, test } from "bun:test";
import { runMars } from "../support/binary.ts";
import { stopAllEngines } from "../support/engines.ts";
import {
  diskDigests, fioWrite, removeTestRoots, replicationCluster, testRoot,
} from "../support/replication-cluster.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

test("--fetch-rate-limit bounds a replica's fetch rate; the disks still end equal", async () => {
  const rateBytesPerSecond = 2_000_000;
  const dataBytes = 8 * 1024 * 1024;
  const root = testRoot("mars-e2e-rate-");
  const cluster = await replicationCluster(root, ["alpha", "beta"], {
    runArgs: ["--fetch-rate-limit", String(rateBytesPerSecond)],
  });
  // The join's full sync copies without the limit: let it end before the measured writes.
  const synced = await cluster.primary.mars("wait-sync", "r1", "--all", "--timeout", "60");
  expect(synced.exitCode).toBe(0);
  const started = performance.now();
  await fioWrite(cluster.uri, "8M", root, ["--verify_state_save=0"]);
  const waited = await cluster.primary.mars("wait-sync", "--all", "--timeout", "60");
  const elapsedSeconds = (performance.now() - started) / 1000;
  expect(waited.exitCode).toBe(0);
  // The data (plus record headers) cannot arrive much faster than the limit, less one window
  // of a quarter second in flight; the limiter counts per second, so allow it 30 % slack
  // (25 % was once missed by 1 %, 2.92 s for 2.96 s). Unlimited, the same run takes under 1 s.
  expect(elapsedSeconds).toBeGreaterThanOrEqual((dataBytes / rateBytesPerSecond - 0.25) * 0.7);
  expect(await cluster.primary.stop()).toBe(0);
  expect(await cluster.secondaries[0]!.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.beta).toBe(digests.alpha!);
}, 120_000);

test("a malformed --fetch-rate-limit is a usage error", async () => {
  const result = await runMars(["run", "--home", "/nonexistent", "--fetch-rate-limit", "fast"]);
  expect(result.exitCode).toBe(2);
  expect(result.stderr).toContain("--fetch-rate-limit");
});
