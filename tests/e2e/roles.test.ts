// Roles end to end: handover ring under a writer, refusal while open, failover with split brain,
// its targeted repair, and the fall back to a full sync when the winner's log is gone.
import { afterAll, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { eventually, stopAllEngines, type EngineHandle } from "../support/engines.ts";
import {
  diskDigests, removeTestRoots, replicationCluster, testRoot, viewJson,
} from "../support/replication-cluster.ts";
import {
  blockBytes, ContinuousWriter, missingBlocks, openExport,
} from "../support/role-writer.ts";
import { WanProxy } from "../support/wan-proxy.ts";

const proxies: WanProxy[] = [];
afterAll(async () => {
  for (const proxy of proxies) proxy.stop();
  await stopAllEngines();
  removeTestRoots();
});

const ok = (what: string, result: { exitCode: number; stdout: string; stderr: string }) => {
  if (result.exitCode !== 0) {
    throw new Error(`${what} exited ${result.exitCode}: ${result.stderr}${result.stdout}`);
  }
  return result;
};

/** How many split-brain-* directories hold kept-aside logfiles on `engine`. */
function keptAside(engine: EngineHandle, resource: string): number {
  const directory = join(engine.home, "resources", resource);
  return readdirSync(directory).filter((name) => name.startsWith("split-brain-") &&
    readdirSync(join(directory, name)).some((file) => file.startsWith("log-"))).length;
}

async function statusOf(engine: EngineHandle): Promise<string> {
  return (await viewJson(engine)).resources[0]?.replication?.status ?? "";
}

test("handover ring alpha→beta→gamma→alpha under a continuous writer: no flushed write is " +
  "missing; refused while the device is open, done once it closes", async () => {
  const root = testRoot("mars-e2e-roles-handover-");
  const cluster = await replicationCluster(root, ["alpha", "beta", "gamma"]);
  const [alpha, beta, gamma] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
  const resource = cluster.resource;
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  const writer = new ContinuousWriter(0, 1);
  const limitBlocks = 8192;
  let device = await openExport(alpha!, resource);
  writer.start(device, limitBlocks);
  await Bun.sleep(300);
  const refused = await beta!.mars("primary", resource, "--timeout", "20");
  expect(refused.exitCode).toBe(4);
  expect(refused.stderr).toContain("open");
  await writer.stop();
  await device.close();
  ok("primary (closed)", await beta!.mars("primary", resource, "--timeout", "30"));
  device = await openExport(beta!, resource);
  expect(await missingBlocks(device, writer.flushed)).toEqual([]);
  for (const next of [gamma!, alpha!]) {
    writer.start(device, limitBlocks);
    const handing = next.mars("primary", resource, "--wait-closed", "--timeout", "60");
    await Bun.sleep(700); // the writer goes on while the handover waits for the close
    await writer.stop();
    await device.close();
    const handed = await handing;
    if (handed.exitCode !== 0) await Bun.write("/tmp/roles-ring.log", alpha!.log());
    ok(`primary on ${next.name}`, handed);
    device = await openExport(next, resource);
    expect(await missingBlocks(device, writer.flushed)).toEqual([]);
  }
  await device.close();
  // A handover needs no full sync anywhere (the old primary's last logfile stays available).
  for (const engine of [alpha!, beta!, gamma!]) {
    expect(engine.log()).not.toContain("replica-log-gone");
  }
  console.log(`handover ring: ${writer.written} writes, ${writer.flushed.size} flushed, none lost`);
  expect(writer.flushed.size).toBeGreaterThan(50);
  // secondary: nobody exports; primary elsewhere then checks it has all of the last log.
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  ok("secondary", await alpha!.mars("secondary", resource, "--timeout", "30"));
  expect((await viewJson(alpha!)).resources[0].primary).toBeNull();
  ok("primary after secondary", await beta!.mars("primary", resource, "--timeout", "30"));
  device = await openExport(beta!, resource);
  expect(await missingBlocks(device, writer.flushed)).toEqual([]);
  await device.close();
  ok("wait-sync", await beta!.mars("wait-sync", "--all", "--timeout", "60"));
  for (const engine of [alpha!, beta!, gamma!]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.beta).toBe(digests.alpha!);
  expect(digests.gamma).toBe(digests.alpha!);
}, 150_000);

test("an old primary restarted while a handover waits for its device: its closed log end is " +
  "persisted, the restarted engine publishes it and the handover completes, nothing lost",
async () => {
  const root = testRoot("mars-e2e-roles-restart-");
  const cluster = await replicationCluster(root, ["alpha", "beta"]);
  const [alpha, beta] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
  const resource = cluster.resource;
  const device = await openExport(alpha!, resource);
  const writer = new ContinuousWriter(0, 1, 4);
  await writer.runTo(device, 200);
  const handing = beta!.mars("primary", resource, "--wait-closed", "--timeout", "60");
  await Bun.sleep(1500); // the handover waits for alpha's device to close
  // alpha's service restarts meanwhile: the graceful stop closes the log at its durable end.
  expect(await alpha!.stop()).toBe(0);
  await device.close().catch(() => {});
  expect(existsSync(join(alpha!.home, "resources", resource, "closed-log-end"))).toBe(true);
  await alpha!.start();
  const handed = await handing;
  if (handed.exitCode !== 0) console.log(alpha!.log());
  ok("primary across alpha's restart", handed);
  const moved = await openExport(beta!, resource);
  expect(await missingBlocks(moved, writer.flushed)).toEqual([]);
  await moved.close();
  ok("wait-sync", await beta!.mars("wait-sync", "--all", "--timeout", "60"));
  for (const engine of [alpha!, beta!]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.alpha).toBe(digests.beta!);
}, 150_000);

test("failover after kill -9: the new primary writes, the old one returns, steps down, split " +
  "brain is shown (wait-sync 5), the repair runs, all disks end equal", async () => {
  const root = testRoot("mars-e2e-roles-failover-");
  const cluster = await replicationCluster(root, ["alpha", "beta", "gamma"]);
  const [alpha, beta, gamma] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
  const resource = cluster.resource;
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  let device = await openExport(alpha!, resource);
  const common = new ContinuousWriter(0, 1, 4);
  await common.runTo(device, 200);
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  // beta stops fetching: what alpha writes now reaches gamma only.
  ok("pause-fetch", await beta!.mars("pause-fetch", resource));
  const tail = new ContinuousWriter(100, 2, 4);
  await tail.runTo(device, 300);
  ok("wait-sync gamma", await gamma!.mars("wait-sync", resource, "--timeout", "60"));
  await alpha!.kill();
  await device.close().catch(() => {});
  // Hold alpha's repair so that the split brain can be looked at first.
  ok("pause-sync (engine down)", await alpha!.mars("pause-sync", resource));
  const forced = ok("primary --force", await beta!.mars("primary", "--force", resource,
    "--timeout", "30"));
  expect(forced.stdout).toContain("not fetched");
  ok("resume-fetch", await beta!.mars("resume-fetch", resource));
  device = await openExport(beta!, resource);
  const winner = new ContinuousWriter(150, 3, 4);
  await winner.runTo(device, 400);
  await alpha!.start();
  // Both sides' log after the split point: alpha counts its own, beta (the winner) publishes its.
  // beta counts again at most every 5 s (gamma's split brain had it counted while it wrote):
  // each write beta took after the failover is one record of its log after the split.
  await eventually(async () => ((await viewJson(alpha!)).resources[0]?.splitBrains?.alpha
    ?.primaryRecordsAfter ?? 0) >= winner.written, 20_000);
  const shown = (await viewJson(alpha!)).resources[0].splitBrains.alpha;
  expect(shown.localBytesAfter).toBeGreaterThan(0);
  expect(shown.localRecordsAfter).toBeGreaterThan(0);
  expect(shown.primaryBytesAfter).toBeGreaterThan(0);
  console.log(`both sides after the split: alpha ${shown.localBytesAfter} B / ` +
    `${shown.localRecordsAfter} records, beta ${shown.primaryBytesAfter} B / ` +
    `${shown.primaryRecordsAfter} records (${winner.written} writes of ${blockBytes} B)`);
  const view = await alpha!.mars("view", resource);
  expect(view.stdout).toMatch(new RegExp(String.raw`split-brain@alpha="at \d+@\d+,` +
    String.raw`alpha-wrote=\d+B/\d+records,beta-wrote=\d+B/\d+records`));
  console.log(view.stdout.trim());
  const waited = await alpha!.mars("wait-sync", resource, "--timeout", "10");
  expect(waited.exitCode).toBe(5);
  const plan = ok("invalidate --dry-run", await alpha!.mars("invalidate", resource, "--dry-run"));
  expect(plan.stdout).toContain("targeted: compares");
  expect(plan.stdout).toContain("after the split");
  console.log(plan.stdout.trim());
  ok("resume-sync", await alpha!.mars("resume-sync", resource));
  await eventually(async () => (await statusOf(alpha!)) !== "split-brain" &&
    (await viewJson(alpha!)).resources[0].splitBrains.alpha.repairStartedMs !== null, 20_000);
  await eventually(async () => (await alpha!.mars("wait-sync", resource, "--timeout", "5"))
    .exitCode === 0, 60_000);
  ok("wait-sync --all", await beta!.mars("wait-sync", "--all", "--timeout", "60"));
  expect(await missingBlocks(device, winner.flushed)).toEqual([]);
  await device.close();
  expect(keptAside(alpha!, resource)).toBe(1);
  for (const engine of [alpha!, beta!, gamma!]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.alpha).toBe(digests.beta!);
  expect(digests.gamma).toBe(digests.beta!);
}, 150_000);

/** Two hosts dialing each other through proxies; alpha primary, 200 blocks written and synced. */
async function proxiedPair(rootPrefix: string, sizeBytes: number, betaArgs: string[] = []) {
  const root = testRoot(rootPrefix);
  const cluster = await replicationCluster(root, ["alpha", "beta"], { sizeBytes });
  const [alpha, beta] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
  const resource = cluster.resource;
  for (const engine of [alpha!, beta!]) {
    const proxy = new WanProxy({ targetPort: engine.port }).start();
    proxies.push(proxy);
    ok("set-key", await engine.mars("set-key", `member/${engine.name}`,
      JSON.stringify({ address: `127.0.0.1:${proxy.port}` })));
  }
  await Bun.sleep(500);
  // Restarted engines dial each other only through the proxies.
  for (const engine of [beta!, alpha!]) {
    expect(await engine.stop()).toBe(0);
    await engine.start(engine === beta ? betaArgs : []);
  }
  const socket = `${join(alpha!.home, "resources", resource)}.nbd.sock`;
  await eventually(async () => existsSync(socket), 20_000);
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  const alphaDevice = await openExport(alpha!, resource);
  const common = new ContinuousWriter(0, 1, 8);
  await common.runTo(alphaDevice, 200);
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  return { cluster, alpha: alpha!, beta: beta!, resource, alphaDevice };
}

test("an old primary killed (-9) right after it closed its log, before the new primary heard " +
  "of it: restarted, it publishes its persisted closed log end and the handover completes",
async () => {
  const { cluster, alpha, beta, resource, alphaDevice } =
    await proxiedPair("mars-e2e-roles-kill-mid-handover-", 16 * 1024 * 1024);
  // Without the persisted end this times out (exit 3): the restarted alpha would not know it.
  const handing = beta.mars("primary", resource, "--wait-closed", "--timeout", "40");
  await eventually(async () => (await viewJson(alpha)).resources[0]?.primary === "alpha" &&
    (await alpha.mars("get-key", `resource/${resource}/handover`)).stdout.includes("beta"),
  10_000);
  // Cut off, alpha closes its device: it steps down and closes its log; beta hears nothing.
  for (const proxy of proxies) proxy.setPartitioned(true);
  await alphaDevice.close();
  // Logged once the closed end is persisted (a kill -9 between the two is not this test).
  await eventually(async () => alpha.log().includes("resource-detached"), 20_000);
  await alpha.kill();
  for (const proxy of proxies) proxy.setPartitioned(false);
  await alpha.start();
  const handed = await handing;
  if (handed.exitCode !== 0) console.log(alpha.log());
  ok("primary across alpha's kill -9", handed);
  const moved = await openExport(beta, resource);
  await moved.close();
  ok("wait-sync", await beta.mars("wait-sync", "--all", "--timeout", "60"));
  for (const engine of [alpha, beta]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.alpha).toBe(digests.beta!);
}, 150_000);

test("failover while the old primary is cut off and both write: split brain, the repair " +
  "transfers about the divergent bytes, disks equal", async () => {
  const sizeBytes = 64 * 1024 * 1024;
  const { cluster, alpha, beta, resource, alphaDevice } =
    await proxiedPair("mars-e2e-roles-partition-", sizeBytes);
  for (const proxy of proxies) proxy.setPartitioned(true);
  ok("primary --force", await beta!.mars("primary", "--force", resource, "--timeout", "30"));
  const betaDevice = await openExport(beta!, resource);
  const loser = new ContinuousWriter(2000, 2, 8);
  const winner = new ContinuousWriter(4000, 3, 8);
  const divergentBlocks = 150;
  await Promise.all([loser.runTo(alphaDevice, 2000 + divergentBlocks),
    winner.runTo(betaDevice, 4000 + divergentBlocks)]);
  for (const proxy of proxies) proxy.setPartitioned(false);
  // alpha learns of beta's designation but keeps exporting while its device is open.
  await Bun.sleep(3000);
  expect((await viewJson(alpha!)).resources[0].primary).toBe("beta");
  await alphaDevice.close();
  await eventually(async () => {
    const status = await statusOf(alpha!);
    return status === "caught-up" || status === "replaying";
  }, 60_000);
  await eventually(async () => (await beta!.mars("wait-sync", "--all", "--timeout", "5"))
    .exitCode === 0, 60_000);
  const found = (await viewJson(beta!)).resources[0].splitBrains.alpha;
  expect(found?.primary).toBe("beta");
  console.log(`split brain as view shows it: ${JSON.stringify(found)}`);
  expect(keptAside(alpha!, resource)).toBe(1);
  const copies = [...alpha!.log().matchAll(/sync-copied.*?transferredBlocks["=:]+(\d+)/g)];
  expect(copies.length).toBeGreaterThan(0);
  const transferredBytes = copies.reduce((sum, match) => sum + Number(match[1]), 0) * 4096;
  // The targeted repair read (compared) only the ranges alpha's divergent records name.
  const compared = [...alpha!.log().matchAll(/sync-copied.*?comparedBytes["=:]+(\d+)/g)];
  const comparedBytes = compared.reduce((sum, match) => sum + Number(match[1]), 0);
  expect(alpha!.log()).toMatch(/sync-copied.*?targeted["=:]+true/);
  const divergentBytes = 2 * divergentBlocks * blockBytes;
  console.log(`repair compared ${comparedBytes} bytes, transferred ${transferredBytes} bytes; ` +
    `divergent writes ${divergentBytes} bytes (alpha: ${divergentBlocks * blockBytes})` +
    `; disk ${sizeBytes} bytes`);
  expect(comparedBytes).toBeGreaterThanOrEqual(divergentBlocks * blockBytes);
  expect(comparedBytes).toBeLessThanOrEqual(2 * divergentBlocks * blockBytes);
  expect(transferredBytes).toBeLessThanOrEqual(comparedBytes);
  expect(transferredBytes).toBeGreaterThanOrEqual(divergentBlocks * blockBytes);
  expect(await missingBlocks(betaDevice, winner.flushed)).toEqual([]);
  await betaDevice.close();
  for (const engine of [alpha!, beta!]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.alpha).toBe(digests.beta!);
}, 150_000);

test("a split brain whose winner no longer has its log from the split point: the targeted " +
  "repair falls back to the full fast sync, disks equal", async () => {
  const { cluster, alpha, beta, resource, alphaDevice } =
    // Retention on beta (once primary) drops the cut-off alpha at once and deletes its logfiles.
    await proxiedPair("mars-e2e-roles-log-gone-", 16 * 1024 * 1024, ["--retention-lag", "1,1"]);
  for (const proxy of proxies) proxy.setPartitioned(true);
  ok("primary --force", await beta.mars("primary", "--force", resource, "--timeout", "30"));
  const betaDevice = await openExport(beta, resource);
  const loser = new ContinuousWriter(2000, 2, 8);
  await loser.runTo(alphaDevice, 2100);
  const winner = new ContinuousWriter(3000, 3, 8);
  await winner.runTo(betaDevice, 3100);
  const directory = join(beta.home, "resources", resource);
  await eventually(async () => !readdirSync(directory).some((name) =>
    name.startsWith("log-") && name.endsWith("-alpha")), 30_000);
  // alpha fetches nothing until its targeted copy is done: else its fetcher meets the gone log
  // first and a plain invalidate (full sync) comes before the split brain is even found.
  ok("pause-fetch", await alpha.mars("pause-fetch", resource));
  for (const proxy of proxies) proxy.setPartitioned(false);
  await eventually(async () => (await viewJson(alpha)).resources[0].primary === "beta", 20_000);
  await alphaDevice.close();
  await eventually(async () => /sync-copied.*?targeted["=:]+true/.test(alpha.log()), 30_000);
  ok("resume-fetch", await alpha.mars("resume-fetch", resource));
  await eventually(async () => (await beta.mars("wait-sync", "--all", "--timeout", "5"))
    .exitCode === 0, 90_000);
  const log = alpha.log();
  expect(log).toContain("sync-catch-up-log-gone");
  expect(log).toMatch(/sync-copied.*?targeted["=:]+false/);
  const found = (await viewJson(beta)).resources[0].splitBrains.alpha;
  console.log(`repair after the winner's log was gone: ${JSON.stringify(found?.repair)}`);
  expect(found?.repair?.mode).toBe("full");
  expect(await missingBlocks(betaDevice, winner.flushed)).toEqual([]);
  await betaDevice.close();
  for (const engine of [alpha, beta]) expect(await engine.stop()).toBe(0);
  const digests = await diskDigests(cluster);
  expect(digests.alpha).toBe(digests.beta!);
}, 150_000);

test("a loser that stopped before the winner's restart is still found: the split point the " +
  "winner publishes survives its restart (view shows the split brain, wait-sync 5)", async () => {
  const root = testRoot("mars-e2e-roles-winner-restart-");
  const cluster = await replicationCluster(root, ["alpha", "beta"]);
  const [alpha, beta] = [cluster.primary, ...cluster.secondaries] as EngineHandle[];
  const resource = cluster.resource;
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  let device = await openExport(alpha!, resource);
  await new ContinuousWriter(0, 1, 4).runTo(device, 100);
  ok("wait-sync", await alpha!.mars("wait-sync", "--all", "--timeout", "60"));
  // beta stops fetching: alpha's tail from here on is its divergent history.
  ok("pause-fetch", await beta!.mars("pause-fetch", resource));
  await new ContinuousWriter(100, 2, 4).runTo(device, 200);
  await alpha!.kill();
  await device.close().catch(() => {});
  // alpha neither repairs nor fetches when it returns: only the roles check can find it.
  ok("pause-sync (engine down)", await alpha!.mars("pause-sync", resource));
  ok("pause-fetch (engine down)", await alpha!.mars("pause-fetch", resource));
  ok("primary --force", await beta!.mars("primary", "--force", resource, "--timeout", "30"));
  device = await openExport(beta!, resource);
  await new ContinuousWriter(300, 3, 4).runTo(device, 400);
  await device.close();
  // The winner restarts: its own logfile is now the last one it recovers.
  expect(await beta!.stop()).toBe(0);
  await beta!.start();
  const socket = `${join(beta!.home, "resources", resource)}.nbd.sock`;
  await eventually(async () => existsSync(socket), 20_000);
  device = await openExport(beta!, resource);
  await new ContinuousWriter(400, 4, 4).runTo(device, 420);
  await alpha!.start();
  await eventually(async () =>
    (await viewJson(alpha!)).resources[0]?.splitBrains?.alpha !== undefined, 20_000);
  const found = (await viewJson(alpha!)).resources[0].splitBrains.alpha;
  console.log(`split brain after the winner's restart: ${JSON.stringify(found)}`);
  expect(found.primary).toBe("beta");
  const waited = await alpha!.mars("wait-sync", resource, "--timeout", "10");
  expect(waited.exitCode).toBe(5);
  await device.close();
  for (const engine of [alpha!, beta!]) expect(await engine.stop()).toBe(0);
}, 150_000);

test("a handover whose old primary dies before closing its log times out naming what to do",
  async () => {
    const root = testRoot("mars-e2e-roles-old-primary-dies-");
    const cluster = await replicationCluster(root, ["alpha", "beta"]);
    const [alpha, beta] = [cluster.primary, cluster.secondaries[0]!];
    const device = await openExport(alpha, cluster.resource);
    const handing = beta.mars("primary", cluster.resource, "--wait-closed", "--timeout", "6");
    await eventually(async () => (await alpha.mars("get-key",
      `resource/${cluster.resource}/handover`)).stdout.includes("beta"), 5_000);
    await alpha.kill();
    const handed = await handing;
    expect(handed.exitCode).toBe(3);
    expect(handed.stderr).toContain("alpha is unreachable: run this again once it is back, " +
      "or mars primary --force for a failover");
    await device.close().catch(() => {});
    expect(await beta.stop()).toBe(0);
  }, 60_000);
