// Replication over an emulated WAN: 120 ms RTT and random connection resets lose nothing.
import { afterAll, expect, test } from "bun:test";
import { stopAllEngines } from "../support/engines.ts";
import {
  diskDigests, fioWrite, replicationCluster, viewJson, removeTestRoots, testRoot,
} from "../support/replication-cluster.ts";
import { WanProxy } from "../support/wan-proxy.ts";

let proxy: WanProxy | undefined;
afterAll(async () => {
  proxy?.stop();
  await stopAllEngines();
  removeTestRoots();
});

test("120 ms RTT with resets: lag shows while writing, wait-sync, equal disks", async () => {
  const root = testRoot("mars-e2e-replication-wan-");
  const cluster = await replicationCluster(root, ["alpha", "beta", "gamma"]);
  const { primary, secondaries } = cluster;
  proxy = new WanProxy({
    targetPort: primary.port, forward: { delayMs: 60 }, backward: { delayMs: 60 },
    resetProbability: 0.01, seed: Number(process.env.FC_SEED ?? 7),
  }).start();
  // Every host now reaches the primary through the proxy (metadata and log channels alike).
  const moved = await primary.mars("set-key", `member/${primary.name}`,
    JSON.stringify({ address: `127.0.0.1:${proxy.port}` }));
  expect(moved.exitCode).toBe(0);
  // Restarted secondaries dial only the proxy (an open metadata link would keep its socket).
  for (const engine of secondaries) {
    expect(await engine.stop()).toBe(0);
    await engine.start();
  }
  let lagSeen = 0;
  let writing = true;
  const watcher = (async () => {
    while (writing) {
      const replication = (await viewJson(secondaries[0]!)).resources[0].replication;
      lagSeen = Math.max(lagSeen, replication?.replayLagBytes ?? 0,
        replication?.fetchLagBytes ?? 0);
      await Bun.sleep(100);
    }
  })();
  await fioWrite(cluster.uri, "16M", root, ["--rate=8m"]);
  writing = false;
  await watcher;
  const waited = await primary.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.stderr).toBe("");
  expect(waited.exitCode).toBe(0);
  expect(lagSeen).toBeGreaterThan(0);
  console.log(`resets: ${proxy.resets}, largest lag seen: ${lagSeen} bytes`);
  expect(await primary.stop()).toBe(0);
  for (const engine of secondaries) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.beta).toBe(digests.alpha!);
  expect(digests.gamma).toBe(digests.alpha!);
}, 120_000);
