// Property 1c: power fails at any I/O step of a logfile's batches (O_DIRECT or buffered, with
// or without preallocation): every batch that was durable scans intact, nothing is corruption.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { chainStartDigest } from "../../src/log/position.ts";
import { scanLogfile } from "../../src/log/reader.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";
import { runSteps, runUntil, type Machine } from "../support/translog-harness.ts";

const path = "/log/log-000000001-hostA";

const shapeArbitrary = fc.record({
  seed: fc.integer(),
  /** Records per batch; the last batch is the one the power failure interrupts. */
  batchSizes: fc.array(fc.integer({ min: 1, max: 6 }), { minLength: 1, maxLength: 6 }),
  payloadBytes: fc.oneof(fc.integer({ min: 1, max: 700 }), fc.integer({ min: 3000, max: 9000 })),
  stepsBeforeCrash: fc.integer({ min: 0, max: 12 }),
  direct: fc.boolean(),
  preallocate: fc.boolean(),
});

test("a crash during any batch keeps every durable batch and is never corruption", async () => {
  await fc.assert(fc.asyncProperty(shapeArbitrary, async (shape) => {
    const plain = new SimulatedStorage(seededRandom(shape.seed));
    plain.refuseDirect = !shape.direct;
    await plain.files.makeDirectory("/log");
    const storage = plain.withManualIo();
    const machine: Machine = { storage, clock: new SimulatedClock(), random: seededRandom(1) };
    const writer = await runUntil(machine, LogWriter.start({
      storage, clock: machine.clock, directory: "/log", resource: "r1", origin: "hostA",
      limits: shape.preallocate
        ? { preallocateBytesMin: 8192, preallocateBytesMax: 16384 } : { preallocateBytesMax: 0 },
    }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0 }));
    let durableRecords = 0;
    let durableEnd = writer.durableEnd.offsetBytes;
    for (const [batch, size] of shape.batchSizes.entries()) {
      for (let index = 0; index < size; index++) {
        writer.append({ kind: "write", deviceOffset: index * 512,
          lengthBytes: shape.payloadBytes,
          payload: new Uint8Array(shape.payloadBytes).fill(batch * 16 + index + 1) });
      }
      const last = batch === shape.batchSizes.length - 1;
      if (!last) await runUntil(machine, writer.flush());
      else if (await runSteps(machine, writer.flush(), shape.stepsBeforeCrash)) {
        durableEnd = writer.durableEnd.offsetBytes;
        durableRecords = writer.durableSequence;
      }
      if (!last) {
        durableEnd = writer.durableEnd.offsetBytes;
        durableRecords = writer.durableSequence;
      }
    }
    if (shape.direct && durableRecords > 0) expect(storage.directWrites).toBeGreaterThan(0);
    const rebooted = { ...machine, storage: storage.crash() };
    const scan = await runUntil(rebooted, scanLogfile(rebooted.storage, path));
    expect(scan.endOffset).toBeGreaterThanOrEqual(durableEnd);
    expect(scan.lastRecordSequence).toBeGreaterThanOrEqual(durableRecords);
  }), propertyParameters("log crash at any batch step", 1000));
}, 600_000);
