// A deleted resource's local state is set aside: re-creating its name starts from nothing old.
import { afterAll, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { eventually, stopAllEngines, type EngineHandle } from "../support/engines.ts";
import { sha256OfFile } from "../support/nbd-serve.ts";
import {
  blankDisk, fioWrite, removeTestRoots, replicationCluster, testRoot, viewJson,
} from "../support/replication-cluster.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

const sizeBytes = 16 * 1024 * 1024;

function setAside(engine: EngineHandle, resource: string): string[] {
  const deleted = join(engine.home, "deleted");
  if (!existsSync(deleted)) return [];
  return readdirSync(deleted).filter((name) => name.startsWith(`${resource}-`))
    .map((name) => join(deleted, name));
}

function logfiles(directory: string): string[] {
  return existsSync(directory) ? readdirSync(directory).filter((name) => name.startsWith("log-"))
    : [];
}

test("delete, create again on a new disk: no old logfile is replayed, it replicates", async () => {
  const root = testRoot("mars-e2e-recreate-");
  const cluster = await replicationCluster(root, ["alpha", "beta"], { sizeBytes });
  const [alpha, beta] = [cluster.primary, cluster.secondaries[0]!];
  await fioWrite(cluster.uri, "4M", root);
  expect((await alpha.mars("wait-sync", "r1", "--all", "--timeout", "60")).exitCode).toBe(0);
  const oldLogfiles = logfiles(join(alpha.home, "resources", "r1"));
  expect(oldLogfiles.length).toBeGreaterThan(0);

  const deleted = await alpha.mars("delete-resource", "r1", "--force");
  expect(deleted.exitCode).toBe(0);
  for (const engine of [alpha, beta]) {
    await eventually(async () => !existsSync(join(engine.home, "resources", "r1")), 10_000,
      async () => engine.log());
    const aside = setAside(engine, "r1");
    expect(aside.length).toBe(1);
    expect(logfiles(aside[0]!).length).toBeGreaterThan(0);
    await eventually(async () => engine.log().includes("resource-set-aside"), 2_000);
  }
  expect(logfiles(setAside(alpha, "r1")[0]!)).toEqual(oldLogfiles);

  // At once, with new blank disks: the engines must not take over anything of the old r1.
  const blank = await sha256OfFile(blankDisk(root, "blank", sizeBytes));
  const alphaDisk = blankDisk(root, "alpha-new", sizeBytes);
  const created = await alpha.mars("create-resource", "r1", alphaDisk);
  expect(created.stderr).toBe("");
  expect(created.exitCode).toBe(0);
  await eventually(async () => (await viewJson(beta)).resources.length === 1, 5_000);
  const betaDisk = blankDisk(root, "beta-new", sizeBytes);
  expect((await beta.mars("join-resource", "r1", betaDisk)).exitCode).toBe(0);
  await eventually(async () =>
    (await viewJson(alpha)).resources[0]?.members.length === 2, 10_000);
  expect((await alpha.mars("wait-sync", "r1", "--all", "--timeout", "60")).exitCode).toBe(0);
  expect(await sha256OfFile(alphaDisk)).toBe(blank); // nothing old was replayed onto it
  expect(await sha256OfFile(betaDisk)).toBe(blank);

  await fioWrite(cluster.uri, "1M", root);
  expect((await alpha.mars("wait-sync", "r1", "--all", "--timeout", "60")).exitCode).toBe(0);
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  const written = await sha256OfFile(alphaDisk);
  expect(written).not.toBe(blank);
  expect(await sha256OfFile(betaDisk)).toBe(written);
}, 120_000);

test("with the engine down the commands set the state aside; a stray one is refused", async () => {
  const root = testRoot("mars-e2e-recreate-down-");
  const cluster = await replicationCluster(root, ["gamma"], { sizeBytes });
  const gamma = cluster.primary;
  await fioWrite(cluster.uri, "1M", root);
  expect(await gamma.stop()).toBe(0);
  const deleted = await gamma.mars("delete-resource", "r1");
  expect(deleted.exitCode).toBe(0);
  expect(deleted.stdout).toContain(join(gamma.home, "deleted", "r1-"));
  expect(existsSync(join(gamma.home, "resources", "r1"))).toBe(false);
  expect(setAside(gamma, "r1").length).toBe(1);

  await gamma.start();
  // State no engine set aside (say, a crash right after the deletion) is refused, named.
  const stray = join(gamma.home, "resources", "r2");
  mkdirSync(stray);
  writeFileSync(join(stray, "writeback-position"), "old");
  const refused = await gamma.mars("create-resource", "r2", blankDisk(root, "r2", sizeBytes));
  expect(refused.exitCode).toBe(4);
  expect(refused.stderr).toContain(stray);
  expect(existsSync(join(stray, "writeback-position"))).toBe(true);
}, 60_000);
