// Property 2: replaying a log of random writes and trims onto a blank disk equals applying them.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { createMemoryDevice } from "../../src/block/memory.ts";
import { applyRecord } from "../../src/log/apply.ts";
import { chainStartDigest } from "../../src/log/position.ts";
import { scanLogfile, type ScannedRecord } from "../../src/log/reader.ts";
import { listLogfiles, verifyLogDirectory } from "../../src/log/verify.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const deviceBytes = 64 * 1024;

const operationArbitrary = fc.record({
  kind: fc.constantFrom("write", "write", "write", "trim", "write-zeroes") as fc.Arbitrary<
    "write" | "trim" | "write-zeroes">,
  offset: fc.integer({ min: 0, max: deviceBytes - 1 }),
  lengthBytes: fc.integer({ min: 0, max: 6000 }),
  fill: fc.integer({ min: 0, max: 255 }),
  flushAfter: fc.boolean(),
});

test("replaying the log onto a blank disk equals applying the operations directly", async () => {
  await fc.assert(fc.asyncProperty(
    fc.array(operationArbitrary, { maxLength: 40 }),
    fc.constantFrom(4096, 20_000, 1 << 20),
    fc.constantFrom("none", "zstd") as fc.Arbitrary<"none" | "zstd">,
    async (operations, logfileBytesMax, codec) => {
      const storage = new SimulatedStorage(seededRandom(1));
      await storage.files.makeDirectory("/log");
      const writer = await LogWriter.start({
        storage, clock: new SimulatedClock(), directory: "/log", resource: "r1",
        origin: "hostA", codec, limits: { logfileBytesMax, batchRecordsMax: 5 },
      }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
        stampFloor: 0 });
      const model = new Uint8Array(deviceBytes);
      for (const [index, operation] of operations.entries()) {
        const lengthBytes = Math.min(operation.lengthBytes, deviceBytes - operation.offset);
        const range = { deviceOffset: operation.offset, lengthBytes };
        if (operation.kind === "write") {
          const payload = new Uint8Array(lengthBytes).fill(operation.fill ^ index);
          for (let at = 0; at < lengthBytes; at += 97) payload[at] = at & 255;
          writer.append({ kind: "write", ...range, payload });
          model.set(payload, operation.offset);
        } else {
          writer.append({ kind: operation.kind, ...range });
          model.fill(0, operation.offset, operation.offset + lengthBytes);
        }
        if (operation.flushAfter) await writer.flush();
      }
      await writer.close();

      const disk = createMemoryDevice(deviceBytes);
      disk.bytes.fill(0xee); // replay must not depend on the disk starting zeroed ...
      model.forEach((_, at) => { if (!touched(operations, at)) model[at] = 0xee; });
      for (const logfile of await listLogfiles(storage, "/log")) {
        const onRecord = (record: ScannedRecord) => applyRecord(disk, record);
        await scanLogfile(storage, logfile.path, { onRecord });
      }
      expect(Buffer.from(disk.bytes).equals(Buffer.from(model))).toBe(true);
      await verifyLogDirectory(storage, "/log");
    }), propertyParameters("log replay equals direct application", 1000));
}, 600_000);

/** Whether any operation covered byte `at` (untouched bytes keep the disk's old content). */
function touched(operations: readonly { offset: number; lengthBytes: number }[], at: number) {
  return operations.some((operation) =>
    at >= operation.offset && at < operation.offset + operation.lengthBytes);
}
