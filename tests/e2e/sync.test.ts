// Full sync end to end: join onto a disk with other content, invalidate, concurrent writes.
import { afterAll, expect, test } from "bun:test";
import { closeSync, existsSync, openSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../support/binary.ts";
import { engineHandle, eventually, stopAllEngines } from "../support/engines.ts";
import { runTool, sha256OfFile } from "../support/nbd-serve.ts";
import { blankDisk, fioWrite, viewJson } from "../support/replication-cluster.ts";

const roots: string[] = [];
afterAll(async () => {
  await stopAllEngines();
  for (const root of roots) rmSync(root, { recursive: true, force: true });
});

const sizeBytes = 96 * 1024 * 1024;

/** Fills `path` with seeded pseudo-random bytes (every `strideBytes`, one 4 KiB block). */
function scribble(path: string, seed: number, strideBytes = 4096): void {
  const fd = openSync(path, "r+");
  const block = new Uint8Array(4096);
  let state = seed >>> 0 || 1;
  for (let offset = 0; offset < sizeBytes; offset += strideBytes) {
    for (let index = 0; index < block.length; index += 4) {
      state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
      new DataView(block.buffer).setUint32(index, state >>> 0);
    }
    writeSync(fd, block, 0, block.length, offset);
  }
  closeSync(fd);
}

async function twoHosts(root: string) {
  const alpha = engineHandle("alpha", root);
  const beta = engineHandle("beta", root);
  const ok = (what: string, result: { exitCode: number; stderr: string }) => {
    if (result.exitCode !== 0) throw new Error(`${what}: ${result.stderr}`);
  };
  ok("create-cluster", await alpha.mars("create-cluster", "--host", "alpha", "--listen",
    `127.0.0.1:${alpha.port}`));
  await alpha.start();
  const disks = { alpha: blankDisk(root, "alpha", sizeBytes), beta: blankDisk(root, "beta",
    sizeBytes) };
  scribble(disks.alpha, 1);
  scribble(disks.beta, 2, 3 * 4096);
  ok("create-resource", await alpha.mars("create-resource", "r1", disks.alpha));
  ok("join-cluster", await beta.mars("join-cluster", `127.0.0.1:${alpha.port}`, "--secret-file",
    join(alpha.home, "cluster-secret"), "--host", "beta", "--listen", `127.0.0.1:${beta.port}`));
  await beta.start();
  await eventually(async () => (await viewJson(beta)).resources.length === 1, 5_000);
  const socket = `${join(alpha.home, "resources", "r1")}.nbd.sock`;
  const exported = () => eventually(async () => existsSync(socket), 10_000);
  await exported();
  return { alpha, beta, disks, ok, exported, uri: `nbd+unix:///r1?socket=${socket}` };
}

test("join-resource onto a disk with other content: full sync under writes, equal disks; " +
  "invalidate resyncs a damaged replica; invalidate on the primary is refused", async () => {
  const root = temporaryDirectory("mars-e2e-sync-");
  roots.push(root);
  const { alpha, beta, disks, ok, exported, uri } = await twoHosts(root);
  await eventually(async () => (await viewJson(alpha)).resources[0]?.replication !== undefined,
    5_000).catch(() => {});
  ok("join-resource", await beta.mars("join-resource", "r1", disks.beta));
  // Writes while beta copies blocks: the catch-up replay must repair every race.
  await fioWrite(uri, "16M", root);
  const waited = await alpha.mars("wait-sync", "--all", "--timeout", "60");
  expect(waited.exitCode).toBe(0);
  expect(beta.log()).toContain("sync-copied");
  expect(beta.log()).toContain("sync-done");
  const refused = await alpha.mars("invalidate", "r1");
  expect(refused.exitCode).toBe(4);
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  expect(await sha256OfFile(disks.beta)).toBe(await sha256OfFile(disks.alpha));

  // Damage the replica behind mars's back, then invalidate it: a full sync repairs it.
  scribble(disks.beta, 3, 17 * 4096);
  await alpha.start();
  await beta.start();
  await exported();
  ok("invalidate", await beta.mars("invalidate", "r1"));
  await fioWrite(uri, "8M", root);
  // The log restarts with the process: this sync-done is the invalidated replica's.
  await eventually(async () => beta.log().includes("sync-done"), 30_000).catch((error) => {
    console.error("BETA", beta.log().slice(-3000), "ALPHA", alpha.log().slice(-3000));
    throw error;
  });
  expect(beta.log().indexOf("replica-invalidated")).toBeLessThan(beta.log().indexOf("sync-done"));
  const again = await alpha.mars("wait-sync", "--all", "--timeout", "60");
  expect(again.exitCode).toBe(0);
  expect(beta.log()).toContain("replica-invalidated");
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  expect(await sha256OfFile(disks.beta)).toBe(await sha256OfFile(disks.alpha));
}, 120_000);

test("a sync killed halfway resumes from its cursor after the restart", async () => {
  const root = temporaryDirectory("mars-e2e-sync-resume-");
  roots.push(root);
  const bigBytes = 768 * 1024 * 1024;
  const alpha = engineHandle("alpha", root);
  const beta = engineHandle("beta", root);
  const ok = (what: string, result: { exitCode: number; stderr: string }) => {
    if (result.exitCode !== 0) throw new Error(`${what}: ${result.stderr}`);
  };
  ok("create-cluster", await alpha.mars("create-cluster", "--host", "alpha", "--listen",
    `127.0.0.1:${alpha.port}`));
  await alpha.start();
  const disks = { alpha: blankDisk(root, "alpha", bigBytes), beta: blankDisk(root, "beta",
    bigBytes) };
  // Incompressible data on every block of the primary: the whole disk must travel.
  const fill = await runTool(["dd", "if=/dev/urandom", `of=${disks.alpha}`, "bs=4M",
    `count=${bigBytes / (4 << 20)}`, "conv=notrunc"], { timeoutMs: 60_000 });
  expect(fill.exitCode).toBe(0);
  ok("create-resource", await alpha.mars("create-resource", "r1", disks.alpha));
  ok("join-cluster", await beta.mars("join-cluster", `127.0.0.1:${alpha.port}`, "--secret-file",
    join(alpha.home, "cluster-secret"), "--host", "beta", "--listen", `127.0.0.1:${beta.port}`));
  await beta.start();
  await eventually(async () => (await viewJson(beta)).resources.length === 1, 5_000);
  ok("join-resource", await beta.mars("join-resource", "r1", disks.beta));
  await eventually(async () => {
    const percent = (await viewJson(beta)).resources[0]?.replication?.syncPercent;
    return typeof percent === "number" && percent >= 10;
  }, 60_000);
  await beta.kill();
  await beta.start();
  await eventually(async () => beta.log().includes("sync-done"), 90_000);
  const copied = /sync-copied .*comparedBytes=(\d+)/.exec(beta.log());
  expect(copied).not.toBeNull();
  expect(Number(copied![1])).toBeLessThan(bigBytes);
  ok("wait-sync", await alpha.mars("wait-sync", "--all", "--timeout", "60"));
  expect(await alpha.stop()).toBe(0);
  expect(await beta.stop()).toBe(0);
  expect(await sha256OfFile(disks.beta)).toBe(await sha256OfFile(disks.alpha));
}, 240_000);
