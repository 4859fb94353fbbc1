// Property 3: after a crash at any point, recovery yields a prefix of the issued writes that
// includes every write a completed flush covered and every completed FUA write.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import {
  crash, newMachine, openHarnessTranslog, progress, runSteps, runUntil, settle,
  startHarnessTranslog, type Machine,
} from "../support/translog-harness.ts";

const sectorBytes = 512;
const deviceSectors = 64;
const deviceBytes = deviceSectors * sectorBytes;

type Command =
  | { kind: "write"; sector: number; sectors: number; fua: boolean; fill: number }
  | { kind: "trim"; sector: number; sectors: number }
  | { kind: "flush" }
  | { kind: "progress"; steps: number; advanceMs: number };

// Half the ranges hit a few hot spots, so records rewrite the very same range (coalescing).
const range = {
  sector: fc.oneof(fc.integer({ min: 0, max: deviceSectors - 8 }), fc.constantFrom(0, 8, 13)),
  sectors: fc.oneof(fc.integer({ min: 1, max: 8 }), fc.constant(8)),
};
const commandArbitrary: fc.Arbitrary<Command> = fc.oneof(
  { weight: 6, arbitrary: fc.record({ kind: fc.constant("write" as const), ...range,
    fua: fc.boolean(), fill: fc.integer({ min: 1, max: 255 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("trim" as const), ...range }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("flush" as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("progress" as const),
    steps: fc.integer({ min: 0, max: 12 }), advanceMs: fc.integer({ min: 0, max: 8 }) }) },
);

const scenarioArbitrary = fc.record({
  seed: fc.integer(),
  commands: fc.array(commandArbitrary, { minLength: 1, maxLength: 30 }),
  stepsBeforeCrash: fc.integer({ min: 0, max: 40 }),
  overlayBytesMax: fc.constantFrom(9000, 1024 * 1024),
  logfileBytesMax: fc.constantFrom(6000, 1024 * 1024),
  /** When set, the power fails again after this many I/O steps of the first recovery. */
  stepsBeforeSecondCrash: fc.option(fc.integer({ min: 0, max: 60 })),
  codec: fc.constantFrom("none", "zstd") as fc.Arbitrary<"none" | "zstd">,
  /** Percent of writes and fsyncs that fail with EIO before the crash (0 most of the time). */
  faultPercent: fc.constantFrom(0, 0, 0, 3),
  faultErrno: fc.constantFrom("EIO", "ENOSPC"),
  /** Logfiles open with O_DIRECT (whole blocks, the shared block rewritten); else buffered. */
  direct: fc.boolean(),
  /** Without preallocation every batch extends the logfile (as batches of 1 MiB and more do). */
  preallocate: fc.boolean(),
});

type Scenario = typeof scenarioArbitrary extends fc.Arbitrary<infer T> ? T : never;

function fillBytes(lengthBytes: number, fill: number, index: number): Uint8Array {
  const bytes = new Uint8Array(lengthBytes);
  for (let at = 0; at < lengthBytes; at++) bytes[at] = (fill + index * 7 + (at >> 9)) & 255 || 1;
  return bytes;
}

/** Runs the commands, crashes, recovers; returns what the property needs to judge. */
async function runScenario(scenario: Scenario) {
  let machine: Machine = await newMachine(seededRandom(scenario.seed), deviceBytes);
  machine.storage.refuseDirect = !scenario.direct;
  const limits = {
    overlayBytesMax: scenario.overlayBytesMax, positionPersistDelayMs: 3,
    writer: { logfileBytesMax: scenario.logfileBytesMax, batchDelayMs: 2,
      ...(scenario.preallocate ? {} : { preallocateBytesMax: 0 }) },
  };
  const device = await openHarnessTranslog(machine, limits, scenario.codec);
  const faults = seededRandom(scenario.seed ^ 0x5bd1e995);
  machine.storage.injectFault = (operation) => operation.kind !== "read" &&
    faults.nextUint32() % 100 < scenario.faultPercent ? scenario.faultErrno : undefined;
  const models: Uint8Array[] = [new Uint8Array(deviceBytes)];
  let required = 0; // prefix length every recovery must reach
  let acknowledged = 0; // the longest prefix whose last command was acknowledged
  const acknowledge = (index: number) => { acknowledged = Math.max(acknowledged, index); };
  for (const command of scenario.commands) {
    const index = models.length; // the prefix length once this command is in
    const next = models.at(-1)!.slice();
    if (command.kind === "write") {
      const data = fillBytes(command.sectors * sectorBytes, command.fill, index);
      next.set(data, command.sector * sectorBytes);
      models.push(next);
      const done = device.write(command.sector * sectorBytes, data, { fua: command.fua });
      done.then(() => {
        acknowledge(index);
        if (command.fua) required = Math.max(required, index);
      }, () => {});
    } else if (command.kind === "trim") {
      next.fill(0, command.sector * sectorBytes, (command.sector + command.sectors) * sectorBytes);
      models.push(next);
      device.trim(command.sector * sectorBytes, command.sectors * sectorBytes, { fua: false })
        .then(() => acknowledge(index), () => {});
    } else if (command.kind === "flush") {
      const covered = acknowledged; // a flush covers what was acknowledged when it started
      device.flush().then(() => { required = Math.max(required, covered); }, () => {});
    } else {
      await progress(machine, command.steps, command.advanceMs);
    }
    await settle();
  }
  await progress(machine, scenario.stepsBeforeCrash, 1);
  const mustReach = required;
  const directWrites = machine.storage.directWrites;
  machine = crash(machine);
  if (scenario.stepsBeforeSecondCrash !== null) {
    const interrupted = startHarnessTranslog(machine, limits, scenario.codec);
    await runSteps(machine, interrupted, scenario.stepsBeforeSecondCrash);
    machine = crash(machine);
  }
  const recovered = await openHarnessTranslog(machine, limits, scenario.codec);
  const content = new Uint8Array(deviceBytes);
  await runUntil(machine, recovered.read(0, content));
  await runUntil(machine, recovered.close());
  return { models, mustReach, content, directWrites };
}

function sameBytes(left: Uint8Array, right: Uint8Array): boolean {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}

test("crash consistency: recovery yields a prefix covering every flushed and FUA write",
  async () => {
    await fc.assert(fc.asyncProperty(scenarioArbitrary, async (scenario) => {
      const { models, mustReach, content, directWrites } = await runScenario(scenario);
      // The path chosen is the one that ran: a flushed write went through O_DIRECT, or none did.
      if (!scenario.direct) expect(directWrites).toBe(0);
      else if (mustReach > 0) expect(directWrites).toBeGreaterThan(0);
      const prefixes = models.map((model, length) => ({ model, length }))
        .filter(({ model }) => sameBytes(model, content)).map(({ length }) => length);
      const explanation = `recovered state matches prefixes [${prefixes}] of ` +
        `${models.length - 1} commands; must reach ${mustReach}`;
      expect(prefixes.some((length) => length >= mustReach), explanation).toBe(true);
    }), propertyParameters("translog crash consistency", 1000));
  }, 600_000);
