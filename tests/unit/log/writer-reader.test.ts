// The log writer and reader on real files: round trip, rotation, chain, torn tail, corruption.
import { describe, expect, test } from "bun:test";
import { appendFileSync, openSync, readdirSync, readSync, rmSync, writeSync } from "node:fs";
import { join } from "node:path";
import { scanLogfile } from "../../../src/log/reader.ts";
import { chainStartDigest } from "../../../src/log/position.ts";
import { verifyLogDirectory } from "../../../src/log/verify.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { systemClock } from "../../../src/platform/clock.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import { temporaryDirectory } from "../../support/binary.ts";

const storage = { files: systemFiles, io: createPortableEngine() };

async function writeLog(directory: string, records: number, logfileBytesMax = 1 << 30) {
  const writer = await LogWriter.start({
    storage, clock: systemClock, directory, resource: "r1", origin: "hostA",
    limits: { logfileBytesMax, batchRecordsMax: 7 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let index = 0; index < records; index++) {
    const payload = new Uint8Array(1000 + index).fill(index & 255);
    writer.append({ kind: index % 5 === 4 ? "trim" : "write", deviceOffset: index * 512,
      lengthBytes: index % 5 === 4 ? 4096 : payload.length,
      ...(index % 5 === 4 ? {} : { payload }) });
    if (index % 11 === 0) await writer.flush();
  }
  await writer.close();
}

describe("log writer and reader", () => {
  test("durableEnd trails the appended end until the batch is synced", async () => {
    const directory = temporaryDirectory("mars-log-");
    const writer = await LogWriter.start({
      storage, clock: systemClock, directory, resource: "r1", origin: "hostA",
      limits: { batchDelayMs: 60_000 },
    }, { logfileSequence: 4, firstRecordSequence: 9, previousDigest: chainStartDigest,
      stampFloor: 0 });
    const appended = writer.append({ kind: "trim", deviceOffset: 0, lengthBytes: 512 });
    expect(appended.sequence).toBe(9);
    expect(writer.durableEnd).toEqual({ sequence: 4, offsetBytes: 256 });
    await writer.waitDurable(appended.sequence);
    expect(writer.durableEnd).toEqual(appended.end);
    expect(writer.durableEnd).toEqual(writer.endPosition);
    await writer.close();
    rmSync(directory, { recursive: true });
  });

  test("records round-trip in order across rotated logfiles and the chain verifies", async () => {
    const directory = temporaryDirectory("mars-log-");
    await writeLog(directory, 100, 20_000);
    const names = readdirSync(directory).sort();
    expect(names.length).toBeGreaterThan(3);
    expect(names[0]).toBe("log-000000001-hostA");
    let expected = 1;
    for (const name of names) {
      await scanLogfile(storage, join(directory, name), {
        onRecord(record) {
          expect(record.header.sequence).toBe(expected);
          if (record.header.kind === "write") {
            expect(record.payload.length).toBe(1000 + expected - 1);
            expect(record.payload[0]).toBe((expected - 1) & 255);
          }
          expected++;
        },
      });
    }
    expect(expected).toBe(101);
    const report = await verifyLogDirectory(storage, directory);
    expect(report.logfiles.length).toBe(names.length);
    rmSync(directory, { recursive: true });
  });

  test("garbage after the last batch is a torn tail; a flipped byte mid-file is corruption",
    async () => {
      const directory = temporaryDirectory("mars-log-");
      await writeLog(directory, 40);
      const path = join(directory, "log-000000001-hostA");
      appendFileSync(path, new Uint8Array(100).fill(7));
      const torn = await scanLogfile(storage, path);
      expect(torn.tornTail?.offset).toBe(torn.endOffset);
      expect(torn.recordCount).toBe(40);
      const fd = openSync(path, "r+");
      const byte = new Uint8Array(1);
      readSync(fd, byte, 0, 1, 2000);
      writeSync(fd, new Uint8Array([byte[0]! ^ 0x10]), 0, 1, 2000);
      const scan = scanLogfile(storage, path);
      await expect(scan).rejects.toMatchObject({ code: "defective-log" });
      await expect(scan).rejects.toThrow(/log-000000001-hostA: offset \d+/);
      rmSync(directory, { recursive: true });
    });
});

describe("preallocation", () => {
  test("zeroes ahead of the records are the clean end; a finished logfile has none", async () => {
    const directory = temporaryDirectory("mars-log-");
    const writer = await LogWriter.start({
      storage, clock: systemClock, directory, resource: "r1", origin: "hostA",
      limits: { preallocateBytesMin: 65536 },
    }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0 });
    writer.append({ kind: "write", deviceOffset: 0, lengthBytes: 512,
      payload: new Uint8Array(512).fill(3) });
    await writer.flush();
    const path = join(directory, "log-000000001-hostA");
    const open = await scanLogfile(storage, path);
    // One step past the header; with O_DIRECT logfiles, rounded up to a whole block.
    expect(open.fileSizeBytes).toBeGreaterThanOrEqual(65536 + 256);
    expect(open.fileSizeBytes).toBeLessThan(65536 + 256 + 4096);
    expect(open.preallocatedBytes).toBe(open.fileSizeBytes - open.endOffset);
    expect(open.tornTail).toBeUndefined();
    await writer.close();
    const finished = await scanLogfile(storage, path);
    expect(finished.fileSizeBytes).toBe(finished.endOffset);
    expect(finished.contentDigest).toEqual(open.contentDigest);
    rmSync(directory, { recursive: true });
  });
});
