// Aligned batch buffers outlive their writer (never unmapped): the next writer reuses them.
import { expect, test } from "bun:test";
import { chainStartDigest } from "../../../src/log/position.ts";
import { batchBuffersAlignedMax } from "../../../src/log/batch-buffers.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { IoEngine, Storage } from "../../../src/platform/types.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const limits = { batchBytesMax: 64 * 1024, unsyncedBytesMax: 1024 * 1024 };
/** One writer's worth: its aligned batch buffers and its preallocation zeroes. */
const oneWriterBytes = batchBuffersAlignedMax * (limits.batchBytesMax + 2 * 4096) + 1024 * 1024;

/** Simulated storage whose engine counts the aligned memory it hands out (never given back). */
async function countingStorage(seed: number) {
  const simulated = new SimulatedStorage(seededRandom(seed));
  await simulated.files.makeDirectory("/log");
  const counter = { allocatedBytes: 0 };
  const io: IoEngine = {
    ...simulated.io,
    allocateBuffer: (sizeBytes) => {
      counter.allocatedBytes += sizeBytes;
      return new Uint8Array(sizeBytes);
    },
  };
  const storage: Storage = { files: simulated.files, io };
  return { simulated, storage, counter };
}

test("writers started one after another reuse the aligned buffers of those that closed",
  async () => {
    const { storage, counter } = await countingStorage(7);
    let start = { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0 };
    for (let round = 0; round < 20; round++) {
      const writer = await LogWriter.start({ storage, clock: new SimulatedClock(),
        directory: "/log", resource: "r1", origin: "hostA", limits }, start);
      for (let index = 0; index < 8; index++) {
        writer.append({ kind: "write", deviceOffset: 0, lengthBytes: 8192,
          payload: new Uint8Array(8192).fill(round + 1) });
        if (index % 3 === 0) void writer.flush();
      }
      const { lastStamp } = await writer.close();
      start = { logfileSequence: writer.currentLogfileSequence + 1,
        firstRecordSequence: writer.appendedSequence + 1, previousDigest: chainStartDigest,
        stampFloor: lastStamp };
    }
    expect(counter.allocatedBytes).toBeLessThanOrEqual(oneWriterBytes);
  });

test("a writer that failed leaves its aligned buffers to the writers that follow", async () => {
  const { simulated, storage, counter } = await countingStorage(8);
  for (let round = 0; round < 20; round++) {
    simulated.injectFault = undefined;
    await simulated.files.makeDirectory(`/log/${round}`);
    const writer = await LogWriter.start({ storage, clock: new SimulatedClock(),
      directory: `/log/${round}`, resource: "r1", origin: "hostA", limits },
    { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0 });
    // The disk fails every write from now on: the first batch fails, the rest never go.
    simulated.injectFault = (operation) => (operation.kind === "write" ? "EIO" : undefined);
    const durable: Promise<void>[] = [];
    for (let index = 0; index < 12; index++) {
      const appended = writer.append({ kind: "write", deviceOffset: 0, lengthBytes: 8192,
        payload: new Uint8Array(8192).fill(round + 1) });
      if (index % 4 === 0) durable.push(writer.waitDurable(appended.sequence));
    }
    const outcomes = await Promise.allSettled(durable);
    expect(outcomes.every((outcome) => outcome.status === "rejected")).toBe(true);
    expect(() => writer.append({ kind: "trim", deviceOffset: 0, lengthBytes: 4096 })).toThrow();
  }
  expect(counter.allocatedBytes).toBeLessThanOrEqual(oneWriterBytes);
});
