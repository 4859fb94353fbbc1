// A primary's home that fills up: thresholds escalate to emergency mode, no write is lost, and
// after space returns and an invalidate, the disks are equal. Needs root (mounts a tmpfs).
import { afterAll, expect, test } from "bun:test";
import { mkdirSync, rmSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../support/binary.ts";
import { engineHandle, eventually, stopAllEngines } from "../support/engines.ts";
import { runTool, sha256OfFile } from "../support/nbd-serve.ts";
import { blankDisk, fioWrite, viewJson } from "../support/replication-cluster.ts";

const mounted: string[] = [];
const roots: string[] = [];
afterAll(async () => {
  await stopAllEngines();
  for (const path of mounted) await runTool(["umount", "-l", path]);
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

const isRoot = process.getuid?.() === 0;
const sizeBytes = 64 * 1024 * 1024;
/** Free-space floors (percent) so that a 320 MiB home reaches emergency at ~190 MiB of log. */
const thresholds = "70,60,55,50";

/**
 * alpha (primary, its home a 320 MiB tmpfs) and beta, joined and synced; `runArgs` go to
 * alpha's engine.
 */
async function smallHomeCluster(prefix: string, runArgs: string[]) {
  const root = temporaryDirectory(prefix);
  roots.push(root);
  const alphaHome = join(root, "alpha");
  mkdirSync(alphaHome, { recursive: true });
  const mount = await runTool(["mount", "-t", "tmpfs", "-o", "size=320m", "tmpfs", alphaHome]);
  expect(mount.exitCode).toBe(0);
  mounted.push(alphaHome);
  const alpha = engineHandle("alpha", root);
  const beta = engineHandle("beta", root);
  const disks = { alpha: blankDisk(root, "alpha-disk", sizeBytes),
    beta: blankDisk(root, "beta-disk", sizeBytes) };
  ok("create-cluster", await alpha.mars("create-cluster", "--host", "alpha", "--listen",
    `127.0.0.1:${alpha.port}`));
  await alpha.start(runArgs);
  ok("create-resource", await alpha.mars("create-resource", "r1", disks.alpha));
  ok("join-cluster", await beta.mars("join-cluster", `127.0.0.1:${alpha.port}`, "--secret-file",
    join(alphaHome, "cluster-secret"), "--host", "beta", "--listen", `127.0.0.1:${beta.port}`));
  await beta.start();
  await eventually(async () => (await viewJson(beta)).resources.length === 1, 5_000);
  ok("join-resource", await beta.mars("join-resource", "r1", disks.beta));
  // The join must reach the primary first: its --all would leave beta out, and beta's own
  // wait-sync is refused while the primary does not know beta as a member.
  await eventually(async () =>
    (await viewJson(alpha)).resources[0]?.members.includes("beta") === true, 10_000);
  ok("wait-sync", await beta.mars("wait-sync", "r1", "--timeout", "30"));
  const uri = `nbd+unix:///r1?socket=${join(alphaHome, "resources", "r1")}.nbd.sock`;
  return { root, alphaHome, alpha, beta, disks, uri };
}

function ok(what: string, result: { exitCode: number; stderr: string }): void {
  if (result.exitCode !== 0) throw new Error(`${what}: ${result.stderr}`);
}

test.skipIf(!isRoot)("a full home: emergency mode keeps every write, invalidate resyncs",
  async () => {
  const { root, alphaHome, alpha, beta, disks, uri } =
    await smallHomeCluster("mars-e2e-emergency-", ["--space-thresholds", thresholds]);

  // Every pass writes each block once and reads it back (fio verify): the log grows until the
  // home reaches the emergency floor; then writes go straight to the disk.
  for (let pass = 0; pass < 4; pass++) await fioWrite(uri, "64M", root, ["--rate=40m"]);
  expect(alpha.log()).toContain("emergency-enter");
  // The gap ends its logfile, which then goes: the emergency gives the space back.
  await eventually(async () => alpha.log().includes("logfiles-deleted"), 10_000);
  const outdated = await alpha.mars("wait-sync", "--all", "--timeout", "20");
  expect(outdated.exitCode).toBe(6);
  expect((await viewJson(beta)).resources[0].replication.status).toBe("emergency");

  // Space returns: the primary logs again; the outdated replica is invalidated and resynced.
  ok("remount", await runTool(["mount", "-o", "remount,size=1g", alphaHome]));
  await eventually(async () => alpha.log().includes("emergency-leave"), 10_000);
  await fioWrite(uri, "16M", root);
  ok("invalidate", await beta.mars("invalidate", "r1"));
  await eventually(async () => beta.log().includes("replica-invalidated"), 10_000);
  ok("wait-sync after invalidate", await alpha.mars("wait-sync", "--all", "--timeout", "60"));
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  expect(await sha256OfFile(disks.beta)).toBe(await sha256OfFile(disks.alpha));
  }, 180_000);

test.skipIf(!isRoot)("a burst faster than the space checks: no write fails, emergency instead",
  async () => {
  // The default thresholds: emergency only below 2 % free, far less than one burst between
  // two of the lifetime pass's measurements (500 ms) or one preallocation step of the log.
  const { root, alpha, beta, disks, uri } =
    await smallHomeCluster("mars-e2e-emergency-burst-", []);
  // 5 × 64 MiB in large writes at full speed, each pass verified: fio exits non-zero on any
  // error (before the guard, the log's append met ENOSPC and the device refused every write).
  await fioWrite(uri, "64M", root, ["--loops=5", "--iodepth=32", "--bsrange=64k-1m"]);
  expect(alpha.log()).toContain("no room left in the home for the log");
  // The replica stopped at the gap: consistent but outdated, until it is synced again.
  expect((await alpha.mars("wait-sync", "--all", "--timeout", "20")).exitCode).toBe(6);
  await fioWrite(uri, "4M", root);
  ok("invalidate", await beta.mars("invalidate", "r1"));
  await eventually(async () => beta.log().includes("replica-invalidated"), 10_000);
  ok("wait-sync after invalidate", await alpha.mars("wait-sync", "--all", "--timeout", "60"));
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  expect(await sha256OfFile(disks.beta)).toBe(await sha256OfFile(disks.alpha));
  }, 180_000);
