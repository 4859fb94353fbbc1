// The common failover: the primary dies with nothing unreplicated; when it returns it is a plain
// secondary (no split brain, nothing to repair) and every disk ends equal.
import { afterAll, expect, test } from "bun:test";
import { stopAllEngines, type EngineHandle } from "../support/engines.ts";
import {
  diskDigests, removeTestRoots, replicationCluster, testRoot, viewJson,
} from "../support/replication-cluster.ts";
import { ContinuousWriter, missingBlocks, openExport } from "../support/role-writer.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

test("failover with nothing unfetched: the returning old primary is a plain secondary",
  async () => {
    const root = testRoot("mars-e2e-failover-clean-");
    const cluster = await replicationCluster(root, ["alpha", "beta"]);
    const [alpha, beta] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
    let device = await openExport(alpha!, "r1");
    const before = new ContinuousWriter(0, 1, 4);
    await before.runTo(device, 200);
    expect((await alpha!.mars("wait-sync", "--all", "--timeout", "60")).exitCode).toBe(0);
    await alpha!.kill();
    await device.close().catch(() => {});
    const forced = await beta!.mars("primary", "--force", "r1", "--timeout", "30");
    expect(forced.exitCode).toBe(0);
    expect(forced.stdout).toContain("not fetched of alpha's known log: 0 bytes");
    device = await openExport(beta!, "r1");
    const after = new ContinuousWriter(150, 3, 4);
    await after.runTo(device, 100);
    await alpha!.start();
    const waited = await alpha!.mars("wait-sync", "r1", "--timeout", "30");
    expect(`${waited.exitCode} ${waited.stderr}`).toStartWith("0 ");
    const view = (await viewJson(alpha!)).resources[0];
    expect(view.role).toBe("secondary");
    expect(view.splitBrains).toEqual({});
    expect(await missingBlocks(device, before.flushed)).toEqual([]);
    expect(await missingBlocks(device, after.flushed)).toEqual([]);
    await device.close();
    for (const engine of [alpha!, beta!]) expect(await engine.stop()).toBe(0);
    const digests = await diskDigests(cluster);
    expect(digests.alpha).toBe(digests.beta!);
  }, 120_000);
