// Property 4: every read returns the newest acknowledged data, wherever writeback has got to.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import {
  newMachine, openHarnessTranslog, progress, runUntil,
} from "../support/translog-harness.ts";

const sectorBytes = 512;
// 512 KiB: ranges cross the overlay index's 64 KiB buckets, some at a hot spot on purpose.
const deviceSectors = 1024;
const deviceBytes = deviceSectors * sectorBytes;

// Half the ranges hit a few hot spots, so records rewrite the very same range (coalescing).
const rangeArbitrary = {
  sector: fc.oneof(fc.integer({ min: 0, max: deviceSectors - 8 }),
    fc.constantFrom(0, 8, 13, 125, 128)),
  sectors: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(8)),
};
const commandArbitrary = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("write" as const), ...rangeArbitrary,
    fua: fc.boolean(), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("trim" as const), ...rangeArbitrary }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("zero" as const), ...rangeArbitrary }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("read" as const), ...rangeArbitrary }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("flush" as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("progress" as const),
    steps: fc.integer({ min: 0, max: 20 }), advanceMs: fc.integer({ min: 0, max: 8 }) }) },
);

test("read-your-writes: reads see acknowledged writes before and during writeback", async () => {
  await fc.assert(fc.asyncProperty(
    fc.integer(), fc.array(commandArbitrary, { minLength: 1, maxLength: 40 }),
    fc.constantFrom(9000, 1024 * 1024),
    // Small minimum: overlay copies are reused while reads and writeback race (recycler).
    fc.constantFrom(64 * 1024, 512),
    async (seed, commands, overlayBytesMax, payloadReuseBytesMin) => {
      const machine = await newMachine(seededRandom(seed), deviceBytes);
      const device = await openHarnessTranslog(machine, {
        overlayBytesMax, positionPersistDelayMs: 2, payloadReuseBytesMin,
        writer: { batchDelayMs: 3 },
      });
      const model = new Uint8Array(deviceBytes);
      for (const [index, command] of commands.entries()) {
        if (command.kind === "progress") {
          await progress(machine, command.steps, command.advanceMs);
          continue;
        }
        if (command.kind === "flush") {
          await runUntil(machine, device.flush());
          continue;
        }
        const offset = command.sector * sectorBytes;
        const lengthBytes = command.sectors * sectorBytes;
        if (command.kind === "read") {
          const target = new Uint8Array(lengthBytes);
          await runUntil(machine, device.read(offset, target));
          const expected = model.subarray(offset, offset + lengthBytes);
          expect(Buffer.from(target).equals(Buffer.from(expected)),
            `read ${offset}+${lengthBytes} at command ${index}`).toBe(true);
        } else if (command.kind === "write") {
          const data = new Uint8Array(lengthBytes).fill(command.fill);
          data[0] = index & 255;
          await runUntil(machine, device.write(offset, data, { fua: command.fua }));
          model.set(data, offset);
        } else {
          const done = command.kind === "trim"
            ? device.trim(offset, lengthBytes, { fua: false })
            : device.writeZeroes(offset, lengthBytes, { fua: false, noHole: false });
          await runUntil(machine, done);
          model.fill(0, offset, offset + lengthBytes);
        }
      }
      await runUntil(machine, device.close());
      // After close everything is written back: the raw disk equals the model too.
      expect(Buffer.from(machine.storage.contentOf("/home/r1/disk"))
        .equals(Buffer.from(model))).toBe(true);
    }), propertyParameters("translog read-your-writes", 1000));
}, 600_000);
