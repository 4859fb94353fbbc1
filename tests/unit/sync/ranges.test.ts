// A split brain's targeted repair: range lists merged and aligned to sync blocks, cut into
// chunk pieces that resume exactly, planned from a loser's logfiles; shared history kept, cut.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { chainStartDigest, type LogPosition } from "../../../src/log/position.ts";
import { LogWriter, type AppendInput } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { keepCommonLogfiles } from "../../../src/roles/common-logfiles.ts";
import { planRepair } from "../../../src/roles/repair-plan.ts";
import { setAsideOwnLogfiles } from "../../../src/roles/set-aside.ts";
import { readFileBytes } from "../../../src/store/atomic-file.ts";
import {
  mergeRanges, rangeBytes, rangePieces, rangesValid, type ByteRange,
} from "../../../src/sync/ranges.ts";
import { PositionStore } from "../../../src/translog/position-store.ts";
import { propertyParameters } from "../../support/property.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const blockBytes = 4096;
const sizeBytes = 64 * blockBytes + 512; // the last block is short

/** Block indexes a list covers, for comparing lists by what they name. */
function blocksOf(ranges: readonly ByteRange[]): Set<number> {
  const blocks = new Set<number>();
  for (const range of ranges) {
    const end = Math.min(sizeBytes, range.offsetBytes + range.lengthBytes);
    for (let offset = range.offsetBytes; offset < end; offset += 512) {
      blocks.add(Math.floor(offset / blockBytes));
    }
  }
  return blocks;
}

const rangeArbitrary = fc.record({
  offsetBytes: fc.integer({ min: 0, max: sizeBytes + blockBytes }).map((value) => value & ~511),
  lengthBytes: fc.integer({ min: 0, max: 6 * blockBytes }).map((value) => value & ~511),
});

test("merged ranges are sorted, disjoint, block-aligned, name exactly the touched blocks", () => {
  fc.assert(fc.property(fc.array(rangeArbitrary, { maxLength: 40 }), (input) => {
    const merged = mergeRanges(input, blockBytes, sizeBytes);
    expect(rangesValid(merged, sizeBytes)).toBe(true);
    for (let index = 0; index < merged.length; index++) {
      const range = merged[index]!;
      expect(range.offsetBytes % blockBytes).toBe(0);
      const end = range.offsetBytes + range.lengthBytes;
      expect(end % blockBytes === 0 || end === sizeBytes).toBe(true);
      // Touching ranges are merged: a gap of at least one block separates neighbours.
      if (index > 0) expect(range.offsetBytes).toBeGreaterThan(merged[index - 1]!.offsetBytes +
        merged[index - 1]!.lengthBytes);
    }
    expect([...blocksOf(merged)].sort((a, b) => a - b))
      .toEqual([...blocksOf(input)].sort((a, b) => a - b));
    expect(mergeRanges(merged, blockBytes, sizeBytes)).toEqual(merged);
  }), propertyParameters("merge ranges", 300));
});

test("pieces cover the ranges exactly, each within one chunk, and resume at any boundary", () => {
  fc.assert(fc.property(fc.array(rangeArbitrary, { maxLength: 20 }),
    fc.constantFrom(blockBytes, 4 * blockBytes), fc.nat(), (input, chunkBytes, cut) => {
      const ranges = mergeRanges(input, blockBytes, sizeBytes);
      const pieces = [...rangePieces(ranges, chunkBytes, 0)];
      let listOffset = 0;
      for (const piece of pieces) {
        expect(piece.listOffsetBytes).toBe(listOffset);
        expect(Math.floor(piece.offsetBytes / chunkBytes))
          .toBe(Math.floor((piece.offsetBytes + piece.lengthBytes - 1) / chunkBytes));
        listOffset += piece.lengthBytes;
      }
      expect(listOffset).toBe(rangeBytes(ranges));
      expect(blocksOf(pieces)).toEqual(blocksOf(ranges));
      if (pieces.length === 0) return;
      const from = pieces[cut % pieces.length]!;
      expect([...rangePieces(ranges, chunkBytes, from.listOffsetBytes)])
        .toEqual(pieces.slice(cut % pieces.length));
    }), propertyParameters("range pieces", 200));
});

/** Logs `records` into logfile `sequence` of /r as `origin`; returns the end after each. */
async function logRecords(
  storage: SimulatedStorage, clock: SimulatedClock, origin: string, sequence: number,
  records: readonly AppendInput[],
): Promise<LogPosition[]> {
  const writer = await LogWriter.start({
    storage, clock, directory: "/r", resource: "r", origin,
    limits: { preallocateBytesMin: 0, preallocateBytesMax: 0 },
  }, { logfileSequence: sequence, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  const ends: LogPosition[] = [];
  for (const record of records) {
    writer.append(record);
    await writer.flush();
    ends.push(writer.durableEnd);
  }
  await writer.close();
  return ends;
}

const write = (block: number, blocks = 1): AppendInput => ({
  kind: "write", deviceOffset: block * blockBytes, lengthBytes: blocks * blockBytes,
  payload: new Uint8Array(blocks * blockBytes).fill(block & 255),
});

test("the plan names every block changed after the split; replay restarts there", async () => {
  const storage = new SimulatedStorage(seededRandom(21));
  const clock = new SimulatedClock();
  await storage.files.makeDirectory("/r");
  const common = [write(1), write(2)];
  const divergent: AppendInput[] = [write(10, 2),
    { kind: "trim", deviceOffset: 20 * blockBytes + 512, lengthBytes: 512 },
    { kind: "write-zeroes", deviceOffset: 30 * blockBytes, lengthBytes: 3 * blockBytes }];
  const ends = await logRecords(storage, clock, "alpha", 1, [...common, ...divergent]);
  await logRecords(storage, clock, "alpha", 2, [write(40)]);
  const split = ends[common.length - 1]!;
  // No replay position: nothing tells what the disk holds.
  expect((await planRepair(storage, "/r", split, sizeBytes)).mode).toBe("full");
  const store = await PositionStore.open(storage, "/r");
  await store.write(ends[ends.length - 1]!);
  await store.close();
  const plan = await planRepair(storage, "/r", split, sizeBytes);
  expect(plan).toEqual({
    mode: "targeted", startPosition: split, rangeBytes: 7 * blockBytes,
    ranges: [{ offsetBytes: 10 * blockBytes, lengthBytes: 2 * blockBytes },
      { offsetBytes: 20 * blockBytes, lengthBytes: blockBytes },
      { offsetBytes: 30 * blockBytes, lengthBytes: 3 * blockBytes },
      { offsetBytes: 40 * blockBytes, lengthBytes: blockBytes }],
  });
  // A replica that replayed less than the split restarts at its own position.
  const early = await planRepair(storage, "/r", ends[ends.length - 1]!, sizeBytes);
  expect(early.mode === "targeted" && early.ranges.length).toBe(1);
  // A gap after the split (retention deleted logfile 3, which may have been applied).
  await logRecords(storage, clock, "alpha", 4, [write(50)]);
  expect(await planRepair(storage, "/r", split, sizeBytes))
    .toEqual({ mode: "full", reason: "logfile 3 after the split is not here" });
  await storage.files.remove("/r/log-000000004-alpha");
  // A logfile after the split that it may have applied is gone: the blocks cannot be named.
  await storage.files.remove("/r/log-000000001-alpha");
  const gone = await planRepair(storage, "/r", split, sizeBytes);
  expect(gone.mode).toBe("full");
});

test("the shared history up to the split stays, cut there; own logfiles come back from aside",
  async () => {
    const storage = new SimulatedStorage(seededRandom(22));
    const clock = new SimulatedClock();
    await storage.files.makeDirectory("/r");
    const ends = await logRecords(storage, clock, "alpha", 1, [write(1), write(2), write(3)]);
    const original = await readFileBytes(storage, "/r/log-000000001-alpha");
    const aside = await setAsideOwnLogfiles(storage, "/r", "alpha", 0);
    const split = ends[1]!;
    const kept = await keepCommonLogfiles(storage, "/r", aside!.path, split, split);
    expect([...kept]).toEqual(["log-000000001-alpha"]);
    const copy = await readFileBytes(storage, "/r/log-000000001-alpha");
    expect(copy).toEqual(original!.subarray(0, split.offsetBytes));
    // The full logfile stays aside; a second logfile numbered 1 makes the shared part unclear.
    expect((await readFileBytes(storage, `${aside!.path}/log-000000001-alpha`))!.length)
      .toBe(original!.length);
    await storage.files.close(await storage.files.open("/r/log-000000001-beta",
      { create: true }));
    await expect(keepCommonLogfiles(storage, "/r", aside!.path, split, split)).rejects
      .toThrow("logfiles numbered 1");
  });
