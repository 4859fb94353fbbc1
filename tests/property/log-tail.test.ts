// Property 1b: damage inside the last batch is a torn tail that keeps every earlier batch;
// one flipped byte in an earlier batch is corruption reported at the record that holds it.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { MarsError } from "../../src/lib/errors.ts";
import { chainStartDigest } from "../../src/log/position.ts";
import { scanLogfile } from "../../src/log/reader.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const path = "/log/log-000000001-hostA";

/** Writes batches of records; returns the file bytes, batch starts and record starts. */
async function writeBatches(batchSizes: number[], payloadBytes: number) {
  const storage = new SimulatedStorage(seededRandom(3));
  await storage.files.makeDirectory("/log");
  const writer = await LogWriter.start({
    storage, clock: new SimulatedClock(), directory: "/log", resource: "r1", origin: "hostA",
    limits: { preallocateBytesMax: 0 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  const batchStarts: number[] = [];
  const recordStarts: number[] = [];
  for (const [batch, size] of batchSizes.entries()) {
    batchStarts.push(writer.endPosition.offsetBytes);
    for (let index = 0; index < size; index++) {
      const payload = new Uint8Array(payloadBytes).fill(batch * 16 + index + 1);
      const appended = writer.append({ kind: "write", deviceOffset: index * 512,
        lengthBytes: payloadBytes, payload });
      recordStarts.push(appended.start.offsetBytes);
    }
    await writer.flush();
  }
  await writer.close();
  return { storage, bytes: storage.contentOf(path), batchStarts, recordStarts };
}

async function replaceFile(storage: SimulatedStorage, bytes: Uint8Array): Promise<void> {
  const fd = await storage.files.open(path, {});
  await storage.files.truncate(fd, 0);
  await storage.io.submit([{ kind: "write", fd, offset: 0, buffer: bytes }]);
  await storage.files.close(fd);
}

const shapeArbitrary = fc.record({
  batchSizes: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 2, maxLength: 6 }),
  payloadBytes: fc.integer({ min: 1, max: 1500 }),
  damage: fc.array(fc.record({ at: fc.nat(), value: fc.integer({ min: 0, max: 255 }) }),
    { minLength: 1, maxLength: 8 }),
  cutAt: fc.option(fc.nat()),
  flipAt: fc.nat(),
});

test("last-batch damage is a torn tail; a byte flipped earlier is corruption", async () => {
  await fc.assert(fc.asyncProperty(shapeArbitrary, async (shape) => {
    const { storage, bytes, batchStarts, recordStarts } =
      await writeBatches(shape.batchSizes, shape.payloadBytes);
    const lastStart = batchStarts.at(-1)!;

    // A crash tears the last batch: arbitrary bytes changed, maybe cut short.
    const torn = bytes.slice();
    for (const { at, value } of shape.damage) {
      torn[lastStart + (at % (bytes.length - lastStart))] = value;
    }
    const cut = shape.cutAt === null
      ? torn.length : lastStart + (shape.cutAt % (torn.length - lastStart + 1));
    await replaceFile(storage, torn.subarray(0, cut));
    const scan = await scanLogfile(storage, path);
    expect(scan.endOffset).toBeGreaterThanOrEqual(lastStart);

    // One flipped byte in an earlier batch: an error naming the record that holds it.
    const flipAt = 256 + (shape.flipAt % (lastStart - 256));
    const flipped = bytes.slice();
    flipped[flipAt]! ^= 0x01;
    await replaceFile(storage, flipped);
    const holder = recordStarts.filter((start) => start <= flipAt).at(-1)!;
    const failure = await scanLogfile(storage, path).then(() => undefined, (error) => error);
    expect(failure).toBeInstanceOf(MarsError);
    expect((failure as MarsError).code).toBe("defective-log");
    expect((failure as MarsError).details.offset).toBe(holder);
  }), propertyParameters("torn tail versus corruption", 1000));
}, 600_000);
