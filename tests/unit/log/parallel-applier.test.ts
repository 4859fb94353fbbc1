// ParallelApplier keeps per-block log order even over a device that completes in any order.
import { expect, test } from "bun:test";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import type { BlockDevice } from "../../../src/block/types.ts";
import { ParallelApplier } from "../../../src/log/apply.ts";
import type { RecordHeader } from "../../../src/log/format.ts";
import type { ScannedRecord } from "../../../src/log/reader.ts";

/** A device that lands writes only when released, newest first (the worst order). */
function reorderingDevice(sizeBytes: number) {
  const memory = createMemoryDevice(sizeBytes);
  const held: Array<() => void> = [];
  const device: BlockDevice = {
    ...memory,
    write: (offset, data) => new Promise<void>((resolve) => {
      held.push(() => {
        memory.bytes.set(data, offset);
        resolve();
      });
    }),
  };
  const releaseAll = async () => {
    while (held.length > 0) {
      held.pop()!();
      await new Promise((resolve) => setImmediate(resolve));
    }
  };
  return { device, memory, releaseAll };
}

function record(sequence: number, offset: number, fill: number, lengthBytes = 1024) {
  const header = {
    kind: "write", codec: "none", sequence, stamp: sequence, deviceOffset: offset, lengthBytes,
    storedBytes: lengthBytes, payloadChecksum: 0n, storedChecksum: 0, fileOffset: 0,
    batchStartOffset: 0,
  } satisfies RecordHeader;
  return { header, payload: new Uint8Array(lengthBytes).fill(fill), endOffset: 0 };
}

test("overlapping records land in log order; disjoint ones run in parallel", async () => {
  const { device, memory, releaseAll } = reorderingDevice(8192);
  const applier = new ParallelApplier(device);
  const records: ScannedRecord[] = [
    record(1, 0, 1), record(2, 512, 2), record(3, 4096, 3), record(4, 0, 4, 512),
  ];
  for (const scanned of records) await applier.apply(scanned);
  const draining = applier.drain();
  await releaseAll();
  await draining;
  await releaseAll();
  expect(applier.applied).toBe(4);
  expect(memory.bytes[0]).toBe(4); // record 4 after record 1
  expect(memory.bytes[512]).toBe(2); // record 2 after record 1
  expect(memory.bytes[1023]).toBe(2);
  expect(memory.bytes[4096]).toBe(3);
});
