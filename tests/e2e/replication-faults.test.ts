// Replication under faults: a damaged local logfile is re-fetched; a paused replica is a prefix.
import { afterAll, expect, test } from "bun:test";
import { copyFileSync, openSync, readSync, writeSync, closeSync } from "node:fs";
import { join } from "node:path";
import { openFileDevice } from "../../src/block/file.ts";
import { applyRecord, listLogfiles, scanLogfile, type LogPosition } from "../../src/log/index.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { createPortableEngine } from "../../src/platform/io/portable.ts";
import { eventually, stopAllEngines, type EngineHandle } from "../support/engines.ts";
import { sha256OfFile } from "../support/nbd-serve.ts";
import {
  blankDisk, diskDigests, fioWrite, replicationCluster, viewJson, removeTestRoots, testRoot,
} from "../support/replication-cluster.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTestRoots();
});

async function replicationOf(engine: EngineHandle) {
  return (await viewJson(engine)).resources[0].replication;
}

function logfilePath(engine: EngineHandle, sequence: number, origin: string): string {
  return join(engine.home, "resources", "r1", `log-${String(sequence).padStart(9, "0")}-${origin}`);
}

test("a flipped byte in a secondary's logfile stops replay there; re-fetch repairs it",
  async () => {
    const root = testRoot("mars-e2e-replication-defect-");
    const cluster = await replicationCluster(root, ["alpha", "beta"]);
    const [beta] = cluster.secondaries as [EngineHandle];
    // The join's full sync must be over first, or the writes below reach beta through the
    // sync's copy instead of the log whose byte the test flips.
    const synced = await cluster.primary.mars("wait-sync", "r1", "--all", "--timeout", "60");
    expect(synced.exitCode).toBe(0);
    expect((await beta.mars("pause-replay", "r1")).exitCode).toBe(0);
    await fioWrite(cluster.uri, "8M", root);
    // Reports are published every 500 ms: wait until the primary's log end stands still and
    // beta has all of it, then stop fetching (and see beta report that).
    let target: LogPosition = { sequence: 1, offsetBytes: 0 };
    await eventually(async () => {
      const logEnd = (await replicationOf(cluster.primary)).logEnd as LogPosition;
      const fetched = (await replicationOf(beta))?.fetched;
      const settled = JSON.stringify(logEnd) === JSON.stringify(target) &&
        JSON.stringify(fetched) === JSON.stringify(logEnd) && logEnd.offsetBytes > 4096;
      target = logEnd;
      return settled;
    }, 20_000, async () => `primary ${JSON.stringify(await replicationOf(cluster.primary))}\n` +
      `beta ${JSON.stringify(await replicationOf(beta))}\n${beta.log().slice(-3000)}`);
    expect((await beta.mars("pause-fetch", "r1")).exitCode).toBe(0);
    await eventually(async () => (await replicationOf(beta))?.fetchState === "paused", 5_000);
    const path = logfilePath(beta, target.sequence, "alpha");
    const fd = openSync(path, "r+");
    const byte = Buffer.alloc(1);
    const offset = target.offsetBytes - 100;
    readSync(fd, byte, 0, 1, offset);
    byte[0] = byte[0]! ^ 0x20;
    writeSync(fd, byte, 0, 1, offset);
    closeSync(fd);
    expect((await beta.mars("resume-replay", "r1")).exitCode).toBe(0);
    await eventually(async () => (await replicationOf(beta))?.status === "defective", 20_000)
      .catch(async (error) => {
        console.log(JSON.stringify(await replicationOf(beta)), beta.log());
        throw error;
      });
    const defective = await replicationOf(beta);
    expect(defective.defect.file).toBe(path);
    expect(defective.defect.offset).toBeLessThanOrEqual(offset);
    const line = (await beta.mars("view")).stdout;
    expect(line).toContain("repl=defective");
    const refused = await beta.mars("wait-sync", "--timeout", "5");
    expect(refused.exitCode).toBe(7);
    expect((await beta.mars("resume-fetch", "r1")).exitCode).toBe(0);
    const waited = await cluster.primary.mars("wait-sync", "--all", "--timeout", "30");
    expect(waited.exitCode).toBe(0);
    expect(beta.log()).toContain("log-repair");
    expect(await cluster.primary.stop()).toBe(0);
    expect(await beta.stop()).toBe(0);
    const digests = await diskDigests(cluster);
    expect(digests.beta).toBe(digests.alpha!);
  }, 90_000);

/** For a failure message: the first differing 4 KiB blocks and the log records touching them. */
async function explainMismatch(
  directory: string, snapshotPath: string, rebuiltPath: string,
): Promise<string> {
  const snapshot = await Bun.file(snapshotPath).bytes();
  const rebuilt = await Bun.file(rebuiltPath).bytes();
  const blockBytes = 4096;
  const differing: number[] = [];
  for (let offset = 0; offset < snapshot.length && differing.length < 4; offset += blockBytes) {
    const a = snapshot.subarray(offset, offset + blockBytes);
    const b = rebuilt.subarray(offset, offset + blockBytes);
    if (Buffer.compare(a, b) !== 0) differing.push(offset);
  }
  const lines = [`differing blocks (first 4): ${differing.join(", ")}`];
  const storage = { files: systemFiles, io: createPortableEngine() };
  for (const logfile of await listLogfiles(storage, directory)) {
    await scanLogfile(storage, logfile.path, {
      onRecord: async (record) => {
        const { deviceOffset, lengthBytes, kind, sequence } = record.header;
        const touches = differing.some((offset) =>
          offset < deviceOffset + lengthBytes && deviceOffset < offset + blockBytes);
        if (touches) {
          lines.push(`  logfile ${logfile.sequence} record ${sequence} ${kind} ` +
            `[${deviceOffset}, +${lengthBytes}) ends at ${record.endOffset}`);
        }
      },
    });
  }
  return lines.join("\n");
}

/** The primary's device as of `position`: its logs replayed onto a blank disk up to there. */
async function historyAt(
  directory: string, position: LogPosition, path: string,
): Promise<string> {
  const storage = { files: systemFiles, io: createPortableEngine() };
  const device = await openFileDevice(storage, path);
  for (const logfile of await listLogfiles(storage, directory)) {
    if (logfile.sequence > position.sequence) break;
    await scanLogfile(storage, logfile.path, {
      onRecord: async (record) => {
        const inside = logfile.sequence < position.sequence ||
          record.endOffset <= position.offsetBytes;
        if (inside) await applyRecord(device, record);
      },
    });
  }
  await device.flush();
  await device.close();
  await storage.io.close();
  return sha256OfFile(path);
}

test("anytime consistency: a replica paused at random points equals the primary's history",
  async () => {
    const root = testRoot("mars-e2e-replication-prefix-");
    const cluster = await replicationCluster(root, ["alpha", "beta"], { sizeBytes: 32 << 20 });
    const [beta] = cluster.secondaries as [EngineHandle];
    const snapshots: { position: LogPosition; path: string }[] = [];
    const seed = Number(process.env.FC_SEED ?? Date.now() % 100_000);
    console.log(`anytime consistency seed ${seed} (FC_SEED replays it)`);
    let random = seed || 1;
    const nextDelayMs = () => {
      random = (random * 48_271) % 2_147_483_647;
      return 100 + (random % 400);
    };
    const writing = fioWrite(cluster.uri, "16M", root, ["--rate=6m", "--size=16M"]);
    for (let round = 0; round < 4; round++) {
      await Bun.sleep(nextDelayMs());
      expect((await beta.mars("pause-replay", "r1")).exitCode).toBe(0);
      await eventually(async () => (await replicationOf(beta))?.replayState === "paused", 10_000);
      const paused = await replicationOf(beta);
      // Anytime consistency is the promise of a consistent replica (not of one mid-sync).
      expect(paused.consistent).toBe(true);
      const position = paused.replayed as LogPosition;
      const path = join(root, `snapshot-${round}.img`);
      copyFileSync(cluster.disks.beta!, path);
      snapshots.push({ position, path });
      expect((await beta.mars("resume-replay", "r1")).exitCode).toBe(0);
      await eventually(async () => (await replicationOf(beta))?.replayState !== "paused", 10_000);
    }
    await writing;
    expect(await cluster.primary.stop()).toBe(0);
    expect(await beta.stop()).toBe(0);
    const directory = join(cluster.primary.home, "resources", "r1");
    for (const [index, snapshot] of snapshots.entries()) {
      const rebuilt = blankDisk(root, `history-${index}`, 32 << 20);
      const expected = await historyAt(directory, snapshot.position, rebuilt);
      if (expected !== await sha256OfFile(snapshot.path)) {
        console.log(`snapshot ${index} at ${JSON.stringify(snapshot.position)} of ` +
          JSON.stringify(snapshots.map((item) => item.position)));
        console.log(await explainMismatch(directory, snapshot.path, rebuilt));
        console.log(`beta's log:\n${beta.log().slice(-6000)}`);
      }
      expect(await sha256OfFile(rebuilt)).toBe(await sha256OfFile(snapshot.path));
    }
    expect(new Set(snapshots.map((item) => JSON.stringify(item.position))).size).toBeGreaterThan(1);
  }, 90_000);

test("with the primary gone, a secondary fetches from a member that is further ahead",
  async () => {
    const root = testRoot("mars-e2e-replication-fallback-");
    const cluster = await replicationCluster(root, ["alpha", "beta", "gamma"]);
    const [beta, gamma] = cluster.secondaries as [EngineHandle, EngineHandle];
    expect((await gamma.mars("pause-fetch", "r1")).exitCode).toBe(0);
    await eventually(async () => (await replicationOf(gamma))?.fetchState === "paused", 5_000);
    await fioWrite(cluster.uri, "8M", root);
    expect((await cluster.primary.mars("wait-sync", "r1", "--timeout", "30")).exitCode).toBe(0);
    const waited = await beta.mars("wait-sync", "r1", "--timeout", "30");
    expect(`${waited.exitCode} ${waited.stderr}`).toStartWith("0 ");
    // gamma's wait-sync targets the primary's log end as gamma last heard it (its fetch is
    // paused, so only the published report tells it): let that report reach gamma first.
    // The end itself is beta's replay position: wait-sync asked the primary for its exact end
    // and nothing writes any more, while the primary's own report may still be a moment old.
    const primaryEnd = JSON.stringify((await replicationOf(beta)).replayed);
    await eventually(async () => {
      const replicas = (await viewJson(gamma)).resources[0].replicas;
      return JSON.stringify(replicas.alpha?.logEnd) === primaryEnd;
    }, 10_000, async () => `primary's end ${primaryEnd}, now ` +
      `${JSON.stringify((await replicationOf(cluster.primary)).logEnd)}; gamma sees ` +
      `${JSON.stringify((await viewJson(gamma)).resources[0].replicas.alpha)}`);
    expect(await cluster.primary.stop()).toBe(0);
    const target = (await replicationOf(beta)).replayed as LogPosition;
    const timedOut = await gamma.mars("wait-sync", "r1", "--timeout", "1");
    expect(`${timedOut.exitCode} ${timedOut.stderr}`).toStartWith("3 ");
    expect((await gamma.mars("resume-fetch", "r1")).exitCode).toBe(0);
    await eventually(async () => {
      const replication = await replicationOf(gamma);
      return replication?.source === "beta" &&
        JSON.stringify(replication.replayed) === JSON.stringify(target);
    }, 30_000, async () => `gamma ${JSON.stringify(await replicationOf(gamma))}\n` +
      `${gamma.log().slice(-3000)}`);
    expect(gamma.log()).toContain("log-source-fallback");
    for (const engine of [beta, gamma]) expect(await engine.stop()).toBe(0);
    const digests = await diskDigests(cluster);
    expect(digests.beta).toBe(digests.alpha!);
    expect(digests.gamma).toBe(digests.alpha!);
  }, 90_000);
