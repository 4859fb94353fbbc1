// Logfile digests on the worker thread equal the inline ones, and a chain made with them verifies.
import { expect, test } from "bun:test";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { verifyLogDirectory } from "../../../src/log/verify.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { systemClock } from "../../../src/platform/clock.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { sha256 } from "../../../src/platform/hash.ts";
import { allocateAlignedBuffer } from "../../../src/platform/io/aligned.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import {
  stopDigestWorker, threadedContentDigest,
} from "../../../src/platform/threaded-digest.ts";

test("aligned and shared memory (in place) and heap memory (copied) hash like sha256", async () => {
  const aligned = allocateAlignedBuffer(3 * 4096 + 17);
  aligned.forEach((_, index) => (aligned[index] = index * 7));
  const heap = new Uint8Array(5000).fill(9);
  const shared = new Uint8Array(new SharedArrayBuffer(3000)).fill(5).subarray(10, 2000);
  const digest = threadedContentDigest();
  digest.update(aligned);
  digest.update(heap);
  digest.update(aligned.subarray(100, 200));
  digest.update(shared);
  await digest.settled();
  expect(digest.digest()).toEqual(sha256(aligned, heap, aligned.subarray(100, 200), shared));
  digest.update(heap);
  expect(digest.digest())
    .toEqual(sha256(aligned, heap, aligned.subarray(100, 200), shared, heap));
  digest.close();
  // The digest covered every update: settled at once, even with the notes dropped by close.
  await digest.settled();
});

test("a log written with worker digests rotates into a chain that verifies", async () => {
  const { engine: io } = openIoEngine();
  const storage = { files: systemFiles, io, digests: threadedContentDigest };
  const directory = mkdtempSync(join(tmpdir(), "mars-digest-"));
  const writer = await LogWriter.start({
    storage, clock: systemClock, directory, resource: "r1", origin: "hostA",
    limits: { logfileBytesMax: 3 * 1024 * 1024 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: new Uint8Array(32),
    stampFloor: 0 });
  for (let index = 0; index < 24; index++) {
    writer.append({ kind: "write", deviceOffset: 0, lengthBytes: 512 * 1024,
      payload: new Uint8Array(512 * 1024).fill(index) });
    if (index % 5 === 0) await writer.flush();
  }
  await writer.close();
  const report = await verifyLogDirectory({ files: systemFiles, io }, directory);
  expect(report.logfiles.length).toBeGreaterThan(3);
  await io.close();
  rmSync(directory, { recursive: true });
});

test("updates sent before close settle once the worker consumed them", async () => {
  const aligned = allocateAlignedBuffer(1024 * 1024);
  const digest = threadedContentDigest();
  for (let index = 0; index < 8; index++) digest.update(aligned);
  const settled = digest.settled();
  digest.close();
  // Without a final digest() the worker's notes still count: the buffer may be reused then.
  const outcome = await Promise.race([settled.then(() => "settled"),
    Bun.sleep(5000).then(() => "still waiting")]);
  expect(outcome).toBe("settled");
  expect(await Promise.race([digest.settled().then(() => "settled"),
    Bun.sleep(5000).then(() => "still waiting")])).toBe("settled");
});

test("a stopped worker: its digests settle and fail at once; new ones get a new worker",
  async () => {
    const aligned = allocateAlignedBuffer(4 * 1024 * 1024);
    const digest = threadedContentDigest();
    for (let index = 0; index < 16; index++) digest.update(aligned);
    const settled = digest.settled();
    stopDigestWorker();
    // The worker reads no buffer any more, so they may be reused; the digest is lost for good.
    expect(await Promise.race([settled.then(() => "settled"),
      Bun.sleep(5000).then(() => "still waiting")])).toBe("settled");
    const began = performance.now();
    expect(() => digest.digest()).toThrow(/digest worker/);
    expect(performance.now() - began).toBeLessThan(1000);
    digest.close();
    const next = threadedContentDigest();
    next.update(aligned.subarray(0, 4096));
    expect(next.digest()).toEqual(sha256(aligned.subarray(0, 4096)));
    next.close();
  }, 20_000);
