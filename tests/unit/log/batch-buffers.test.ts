// Aligned batch buffers outlive their writer (never unmapped): the next writer reuses them.
import { expect, test } from "bun:test";
import { chainStartDigest } from "../../../src/log/position.ts";
import { batchBuffersAlignedMax } from "../../../src/log/batch-buffers.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { IoEngine, Storage } from "../../../src/platform/types.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

test("writers started one after another reuse the aligned buffers of those that closed",
  async () => {
    const simulated = new SimulatedStorage(seededRandom(7));
    await simulated.files.makeDirectory("/log");
    let allocatedBytes = 0;
    const io: IoEngine = {
      ...simulated.io,
      allocateBuffer: (sizeBytes) => {
        allocatedBytes += sizeBytes; // as aligned memory, never given back to the system
        return new Uint8Array(sizeBytes);
      },
    };
    const storage: Storage = { files: simulated.files, io };
    const limits = { batchBytesMax: 64 * 1024, unsyncedBytesMax: 1024 * 1024 };
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
    // One writer's worth: its aligned batch buffers and its preallocation zeroes.
    const oneWriterBytes = batchBuffersAlignedMax * (limits.batchBytesMax + 2 * 4096) +
      1024 * 1024;
    expect(allocatedBytes).toBeLessThanOrEqual(oneWriterBytes);
  });

test("a writer that failed leaves its aligned buffers to the writers that follow", async () => {
  const simulated = new SimulatedStorage(seededRandom(8));
  await simulated.files.makeDirectory("/log");
  let allocatedBytes = 0;
  const io: IoEngine = {
    ...simulated.io,
    allocateBuffer: (sizeBytes) => {
      allocatedBytes += sizeBytes;
      return new Uint8Array(sizeBytes);
    },
  };
  const storage: Storage = { files: simulated.files, io };
  const limits = { batchBytesMax: 64 * 1024, unsyncedBytesMax: 1024 * 1024 };
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
  const oneWriterBytes = batchBuffersAlignedMax * (limits.batchBytesMax + 2 * 4096) +
    1024 * 1024;
  expect(allocatedBytes).toBeLessThanOrEqual(oneWriterBytes);
});
