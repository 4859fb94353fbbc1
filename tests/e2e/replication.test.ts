// Replication end to end: fio writes on a primary, two secondaries fetch and replay, disks match.
import { afterAll, expect, test } from "bun:test";
import { eventually, stopAllEngines } from "../support/engines.ts";
import { sha256OfFile } from "../support/nbd-serve.ts";
import {
  blankDisk, diskDigests, fioWrite, replicationCluster, viewJson, removeTestRoots, testRoot,
} from "../support/replication-cluster.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

test("primary + 2 secondaries: fio verify, wait-sync --all, three equal disks", async () => {
  const root = testRoot("mars-e2e-replication-");
  const cluster = await replicationCluster(root, ["alpha", "beta", "gamma"]);
  await fioWrite(cluster.uri, "24M", root);
  const waited = await cluster.primary.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.stderr).toBe("");
  expect(waited.exitCode).toBe(0);
  expect(waited.stdout).toContain("2 replicas in sync");
  // The secondary's own view may trail what it already reported by one refresh under load.
  let replication: Record<string, unknown> = {};
  await eventually(async () => {
    replication = (await viewJson(cluster.secondaries[0]!)).resources[0].replication;
    return replication.status === "caught-up";
  }, 5_000).catch(() => undefined);
  expect(replication).toMatchObject({ status: "caught-up", consistent: true, defect: null });
  expect(replication.replayLagBytes).toBe(0);
  const unknown = await cluster.primary.mars("wait-sync", "r9", "--timeout", "1");
  expect(unknown.exitCode).toBe(8);
  const json = await cluster.secondaries[1]!.mars("wait-sync", "--json", "--timeout", "10");
  expect(json.exitCode).toBe(0);
  expect(JSON.parse(json.stdout.trim().split("\n").at(-1)!)).toEqual({ synced: true, replicas: 1 });
  // The primary's backing disk lags its overlay until writeback finished: a graceful stop
  // writes everything back and persists the position before the disk is hashed.
  expect(await cluster.primary.stop()).toBe(0);
  for (const engine of cluster.secondaries) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  const blank = await sha256OfFile(blankDisk(root, "blank", 64 * 1024 * 1024));
  expect(digests.alpha).not.toBe(blank);
  expect(digests.beta).toBe(digests.alpha!);
  expect(digests.gamma).toBe(digests.alpha!);
}, 90_000);
