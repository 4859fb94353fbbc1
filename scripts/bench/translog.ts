// `bun run bench translog`: 4 KiB random writes with a flush every 32, translog vs plain file.
// Usage: bun run bench translog [--dir DIR] [--writes N] [--rounds N] [--engine uring|portable]
import {
  closeSync, fsyncSync, mkdirSync, openSync, rmSync, writeSync,
} from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openFileDevice } from "../../src/block/file.ts";
import type { BlockDevice } from "../../src/block/types.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { openIoEngine } from "../../src/platform/io/index.ts";
import type { Storage } from "../../src/platform/types.ts";
import { openTranslog } from "../../src/translog/translog.ts";

const { values } = parseArgs({
  options: {
    dir: { type: "string", default: "/var/tmp/mars-bench-translog" },
    writes: { type: "string", default: "4096" },
    rounds: { type: "string", default: "5" },
    engine: { type: "string" },
  },
});
const deviceBytes = 256 * 1024 * 1024;
const blockBytes = 4096;
const writesPerFlush = 32;
const writeCount = Number(values.writes);
const rounds = Number(values.rounds);
const engineName = values.engine as "uring" | "portable" | undefined;

/** The same pseudo-random offsets for both contenders in a round. */
function offsets(seed: number): number[] {
  let state = seed >>> 0 || 1;
  return Array.from({ length: writeCount }, () => {
    state ^= state << 13;
    state ^= state >>> 17;
    state ^= state << 5;
    return ((state >>> 0) % (deviceBytes / blockBytes)) * blockBytes;
  });
}

interface Timing {
  /** Writes per second up to the last flush's reply (every write durable). */
  readonly durableIops: number;
  /** Writes per second including close (the translog's writeback drained to the disk). */
  readonly drainedIops: number;
}

async function drive(device: BlockDevice, places: number[]): Promise<Timing> {
  const data = new Uint8Array(blockBytes);
  const started = performance.now();
  for (const [index, offset] of places.entries()) {
    data[0] = index & 255;
    await device.write(offset, data, { fua: false });
    if ((index + 1) % writesPerFlush === 0) await device.flush();
  }
  await device.flush();
  const durable = performance.now();
  await device.close();
  const drained = performance.now();
  return {
    durableIops: (places.length * 1000) / (durable - started),
    drainedIops: (places.length * 1000) / (drained - started),
  };
}

async function plainRound(storage: Storage, directory: string, places: number[]) {
  const device = await openFileDevice(storage, join(directory, "plain.img"),
    { createBytes: deviceBytes });
  return drive(device, places);
}

async function translogRound(storage: Storage, directory: string, places: number[]) {
  rmSync(join(directory, "log"), { recursive: true, force: true });
  const backing = await openFileDevice(storage, join(directory, "backing.img"),
    { createBytes: deviceBytes });
  const device = await openTranslog({
    storage, clock: systemClock, directory: join(directory, "log"), resource: "bench",
    host: "bench", backing,
  });
  return drive(device, places);
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

/** Writes the whole image once, so neither side pays for block allocation during the rounds. */
function allocate(path: string): void {
  const zeroes = new Uint8Array(16 * 1024 * 1024);
  const fd = openSync(path, "w");
  for (let offset = 0; offset < deviceBytes; offset += zeroes.length) {
    writeSync(fd, zeroes, 0, zeroes.length, offset);
  }
  fsyncSync(fd);
  closeSync(fd);
}

const directory = values.dir;
mkdirSync(directory, { recursive: true });
allocate(join(directory, "plain.img"));
allocate(join(directory, "backing.img"));
const choice = openIoEngine(engineName);
const storage: Storage = { files: systemFiles, io: choice.engine };
console.log(`translog bench: ${writeCount} random 4 KiB writes, flush every ${writesPerFlush}, ` +
  `${rounds} rounds, io engine ${choice.engine.name} (${choice.reason}), in ${directory} ` +
  `(both images fully allocated first)`);
const plain: Timing[] = [];
const translog: Timing[] = [];
for (let round = 0; round < rounds; round++) {
  const places = offsets(round + 1);
  // Alternate which goes first, so page-cache warmth does not favour one side.
  if (round % 2 === 0) {
    plain.push(await plainRound(storage, directory, places));
    translog.push(await translogRound(storage, directory, places));
  } else {
    translog.push(await translogRound(storage, directory, places));
    plain.push(await plainRound(storage, directory, places));
  }
  const last = (timings: Timing[]) => timings.at(-1)!.durableIops.toFixed(0);
  console.log(`  round ${round + 1}: plain ${last(plain)} writes/s, translog ${last(translog)}`);
}
const report = (what: string, pick: (timing: Timing) => number) => {
  const plainMedian = median(plain.map(pick));
  const translogMedian = median(translog.map(pick));
  console.log(`${what}: plain pwrite+fdatasync ${plainMedian.toFixed(0)} writes/s, ` +
    `translog ${translogMedian.toFixed(0)} writes/s, ratio ${(translogMedian / plainMedian)
      .toFixed(2)}x`);
};
report("until durable (median)", (timing) => timing.durableIops);
report("including writeback drain at close (median)", (timing) => timing.drainedIops);
await choice.engine.close();
rmSync(directory, { recursive: true, force: true });
