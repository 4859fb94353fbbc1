// The content digest: writer, reader and a raw-byte stream agree, and it pins every record.
import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { StreamingContentDigest } from "../../../src/log/content-digest.ts";
import { recordHeaderBytes } from "../../../src/log/format.ts";
import { chainStartDigest } from "../../../src/log/position.ts";
import { scanLogfile } from "../../../src/log/reader.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { systemClock } from "../../../src/platform/clock.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import { chainDigestOfFile } from "../../../src/replication/log-files.ts";
import { temporaryDirectory } from "../../support/binary.ts";

const storage = { files: systemFiles, io: openIoEngine().engine };

/** One finished logfile of writes of varied sizes (some zstd-compressed), trims between. */
async function writeLogfile(directory: string, fill: (index: number) => number): Promise<string> {
  mkdirSync(directory, { recursive: true });
  const writer = await LogWriter.start({
    storage, clock: systemClock, directory, resource: "r1", origin: "hostA", codec: "zstd",
    limits: { batchRecordsMax: 5 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let index = 0; index < 60; index++) {
    const payload = new Uint8Array(512 + index * 97).fill(fill(index));
    if (index % 2 === 1) payload.set(crypto.getRandomValues(new Uint8Array(256)));
    writer.append(index % 7 === 6
      ? { kind: "trim", deviceOffset: index * 4096, lengthBytes: 4096 }
      : { kind: "write", deviceOffset: index * 4096, lengthBytes: payload.length, payload });
    if (index % 9 === 0) await writer.flush();
  }
  await writer.close();
  return join(directory, readdirSync(directory).sort()[0]!);
}

function streamed(bytes: Uint8Array, pieceBytes: number): Uint8Array {
  const digest = new StreamingContentDigest();
  for (let offset = 0; offset < bytes.length; offset += pieceBytes) {
    digest.update(bytes.subarray(offset, offset + pieceBytes));
  }
  return digest.finish("test");
}

describe("content digest", () => {
  test("the reader and a stream cut anywhere agree with the chain of the file", async () => {
    const directory = temporaryDirectory("mars-content-digest-");
    const path = await writeLogfile(directory, (index) => index);
    const bytes = new Uint8Array(readFileSync(path));
    const scanned = await scanLogfile(storage, path);
    expect(scanned.endOffset).toBe(bytes.length);
    for (const pieceBytes of [1, 7, 79, 80, 81, 256, 4096, 1 << 20]) {
      expect(streamed(bytes, pieceBytes)).toEqual(scanned.contentDigest);
    }
    const chain = await chainDigestOfFile(storage, path, bytes.length);
    expect(chain.length).toBe(32);
    rmSync(directory, { recursive: true });
  });

  test("different payloads give different digests; a cut record is refused", async () => {
    const directory = temporaryDirectory("mars-content-digest-");
    const first = await writeLogfile(join(directory, "a"), (index) => index);
    const second = await writeLogfile(join(directory, "b"), (index) => (index === 30 ? 1 : index));
    const firstDigest = (await scanLogfile(storage, first)).contentDigest;
    expect((await scanLogfile(storage, second)).contentDigest).not.toEqual(firstDigest);
    const bytes = new Uint8Array(readFileSync(first));
    expect(() => streamed(bytes.subarray(0, bytes.length - 1), 4096)).toThrow(/inside a record/);
    expect(() => streamed(bytes.subarray(0, 256 + recordHeaderBytes - 1), 4096))
      .toThrow(/inside a record/);
    rmSync(directory, { recursive: true });
  });
});
