// Full and targeted sync: any target, concurrent writes, interruptions → copy + replay = source.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { createMemoryDevice } from "../../src/block/memory.ts";
import type { BlockDevice } from "../../src/block/types.ts";
import { MarsError } from "../../src/lib/errors.ts";
import { seededRandom } from "../../src/platform/random.ts";
import type { Random } from "../../src/platform/types.ts";
import { memoryCursorStore } from "../../src/sync/cursor.ts";
import { catchUpDone, runFullSync, type SyncPeer } from "../../src/sync/full-sync.ts";
import { mergeRanges, rangeBytes } from "../../src/sync/ranges.ts";
import { localSyncSource } from "../../src/sync/source.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";

const geometry = { blockBytes: 1024, chunkBytes: 4096 };

interface LoggedWrite {
  readonly offsetBytes: number;
  readonly data: Uint8Array;
}

/**
 * The primary in miniature: a log of writes (position = index), a device view that holds every
 * logged write at once (the overlay), and a raw disk that receives them only at writeback.
 */
class MiniPrimary {
  readonly log: LoggedWrite[] = [];
  readonly view: BlockDevice & { bytes: Uint8Array };
  readonly disk: BlockDevice & { bytes: Uint8Array };
  writtenBack = 0;

  constructor(readonly sizeBytes: number, random: Random) {
    this.view = createMemoryDevice(sizeBytes);
    this.disk = createMemoryDevice(sizeBytes);
    for (let index = 0; index < sizeBytes; index++) this.view.bytes[index] = random.nextUint32();
    this.disk.bytes.set(this.view.bytes);
  }

  write(random: Random): void {
    const blocks = this.sizeBytes / 512;
    const start = random.nextUint32() % blocks;
    const count = 1 + (random.nextUint32() % Math.min(4, blocks - start));
    const data = new Uint8Array(count * 512).fill(random.nextUint32() & 255);
    data[0] = random.nextUint32() & 255;
    this.log.push({ offsetBytes: start * 512, data });
    this.view.bytes.set(data, start * 512);
  }

  writeBack(): void {
    if (this.writtenBack === this.log.length) return;
    const { offsetBytes, data } = this.log[this.writtenBack++]!;
    this.disk.bytes.set(data, offsetBytes);
  }
}

async function yieldSome(random: Random): Promise<void> {
  const count = random.nextUint32() % 4;
  for (let index = 0; index < count; index++) await Promise.resolve();
}

/** Wraps a peer so every call waits a random while and may fail (a lost connection). */
function flakyPeer(inner: SyncPeer, random: Random, failAfterCompares: number): SyncPeer {
  let compares = 0;
  return {
    begin: () => inner.begin(),
    endPosition: () => inner.endPosition(),
    async compare(request) {
      await yieldSome(random);
      if (++compares > failAfterCompares) throw new MarsError("peer-unreachable", "cut");
      const reply = await inner.compare(request);
      await yieldSome(random);
      return reply;
    },
  };
}

async function scenario(
  seed: number, sizeBlocks: number, targetKind: "random" | "equal" | "zero",
  reads: "device-view" | "raw-disk", concurrentWrites: number, interruptions: number,
): Promise<void> {
  const random = seededRandom(seed);
  const sizeBytes = sizeBlocks * 512;
  const primary = new MiniPrimary(sizeBytes, random);
  for (let index = 0; index < 5; index++) primary.write(random);
  const target = createMemoryDevice(sizeBytes);
  if (targetKind === "random") {
    for (let index = 0; index < sizeBytes; index++) target.bytes[index] = random.nextUint32();
  } else if (targetKind === "equal") target.bytes.set(primary.disk.bytes);
  const position = (index: number) => ({ sequence: 1, offsetBytes: index });
  const source = localSyncSource({
    host: "primary", view: reads === "device-view" ? primary.view : primary.disk, reads,
    logEnd: () => position(primary.log.length),
    writebackPosition: () => position(primary.writtenBack),
  });
  let writing = true;
  const writer = (async () => {
    for (let count = 0; writing && count < concurrentWrites; count++) {
      primary.write(random);
      if (random.nextUint32() % 2 === 0) primary.writeBack();
      await yieldSome(random);
    }
  })();
  const cursors = memoryCursorStore();
  const clock = new SimulatedClock();
  let outcome;
  for (let attempt = 0; ; attempt++) {
    const failAfter = attempt < interruptions ? random.nextUint32() % 6 : Infinity;
    try {
      outcome = await runFullSync({
        target, cursors, clock, geometry, windowChunks: 1 + (random.nextUint32() % 8),
        persistEveryChunks: 1 + (random.nextUint32() % 3),
        peer: flakyPeer(source, random, failAfter),
      });
      break;
    } catch (error) {
      if (!(error instanceof MarsError) || error.code !== "peer-unreachable") throw error;
      expect(attempt).toBeLessThan(interruptions);
    }
  }
  writing = false;
  await writer;
  expect(outcome.state).toBe("copied");
  expect(await catchUpDone(cursors, outcome.cursor.startPosition)).toBe(
    outcome.cursor.endPosition!.offsetBytes === outcome.cursor.startPosition.offsetBytes);
  // The catch-up replay (replication's job) in miniature: every record from the start on.
  for (let index = outcome.cursor.startPosition.offsetBytes; index < primary.log.length; index++) {
    const { offsetBytes, data } = primary.log[index]!;
    target.bytes.set(data, offsetBytes);
  }
  expect(await catchUpDone(cursors, position(primary.log.length))).toBe(true);
  expect(cursors.current).toBeUndefined();
  expect(Buffer.compare(target.bytes, primary.view.bytes)).toBe(0);
}

test("copy + catch-up replay equals the source for any target, writes and interruptions",
  async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }),
      fc.integer({ min: 1, max: 70 }),
      fc.constantFrom("random", "equal", "zero") as fc.Arbitrary<"random" | "equal" | "zero">,
      fc.constantFrom("device-view", "raw-disk") as fc.Arbitrary<"device-view" | "raw-disk">,
      fc.integer({ min: 0, max: 30 }),
      fc.integer({ min: 0, max: 3 }),
      (seed, sizeBlocks, targetKind, reads, writes, interruptions) =>
        scenario(seed, sizeBlocks, targetKind, reads, writes, interruptions),
    ), propertyParameters("full sync equals source", 200));
  });

test("a raw-disk sync that starts replay at the log end (the wrong rule) can lose writes",
  async () => {
    // The negative control: if the checker cannot see this bug, it could not see it in code.
    const random = seededRandom(7);
    const primary = new MiniPrimary(8 * 512, random);
    for (let index = 0; index < 6; index++) primary.write(random);
    const target = createMemoryDevice(8 * 512);
    const wrong = localSyncSource({
      host: "primary", view: primary.disk, reads: "device-view",
      logEnd: () => ({ sequence: 1, offsetBytes: primary.log.length }),
      writebackPosition: () => ({ sequence: 1, offsetBytes: primary.writtenBack }),
    });
    const outcome = await runFullSync({
      target, peer: wrong, cursors: memoryCursorStore(), clock: new SimulatedClock(), geometry,
    });
    expect(outcome.cursor.startPosition.offsetBytes).toBe(6);
    expect(Buffer.compare(target.bytes, primary.view.bytes)).not.toBe(0);
  });

/**
 * A split brain's targeted repair in miniature: the loser's disk is the winner's history at its
 * replay position P (≤ the split point S) plus some of its own divergent writes. Copying the
 * winner's current content of only the blocks the loser's log names, then replaying the
 * winner's log from P, gives the winner's device: with concurrent writes and interruptions.
 */
async function targetedRepair(
  seed: number, sizeBlocks: number, common: number, loserWrites: number, winnerWrites: number,
  interruptions: number, copyRanges = true,
): Promise<boolean> {
  const random = seededRandom(seed);
  const sizeBytes = sizeBlocks * 512;
  const winner = new MiniPrimary(sizeBytes, random);
  const initial = winner.view.bytes.slice();
  for (let index = 0; index < common; index++) winner.write(random);
  const split = winner.log.length;
  const replayed = random.nextUint32() % (split + 1);
  const target = createMemoryDevice(sizeBytes);
  target.bytes.set(initial);
  for (const { offsetBytes, data } of winner.log.slice(0, replayed)) {
    target.bytes.set(data, offsetBytes);
  }
  // The loser's own history after S: every record is in its log; only some reached its disk.
  const loser = new MiniPrimary(sizeBytes, random);
  for (let index = 0; index < loserWrites; index++) loser.write(random);
  for (const { offsetBytes, data } of loser.log) {
    if (random.nextUint32() % 4 !== 0) target.bytes.set(data, offsetBytes);
  }
  const ranges = copyRanges ? mergeRanges(loser.log.map((write) => ({
    offsetBytes: write.offsetBytes, lengthBytes: write.data.length,
  })), geometry.blockBytes, sizeBytes) : [];
  for (let index = 0; index < winnerWrites; index++) winner.write(random);
  const position = (index: number) => ({ sequence: 1, offsetBytes: index });
  const source = localSyncSource({
    host: "primary", view: winner.view, reads: "device-view",
    logEnd: () => position(winner.log.length),
    writebackPosition: () => position(winner.writtenBack),
  });
  let writing = true;
  const writer = (async () => {
    for (let count = 0; writing && count < winnerWrites; count++) {
      winner.write(random);
      await yieldSome(random);
    }
  })();
  const cursors = memoryCursorStore();
  const plan = { source: "primary", startPosition: position(replayed), ranges };
  let outcome;
  for (let attempt = 0; ; attempt++) {
    const failAfter = attempt < interruptions ? random.nextUint32() % 4 : Infinity;
    try {
      outcome = await runFullSync({
        target, cursors, clock: new SimulatedClock(), geometry, plan,
        windowChunks: 1 + (random.nextUint32() % 8), persistEveryChunks: 1,
        peer: flakyPeer(source, random, failAfter),
      });
      break;
    } catch (error) {
      if (!(error instanceof MarsError) || error.code !== "peer-unreachable") throw error;
    }
  }
  writing = false;
  await writer;
  expect(outcome.state).toBe("copied");
  expect(outcome.targeted).toBe(true);
  expect(outcome.comparedBytes).toBeLessThanOrEqual(rangeBytes(ranges));
  expect(outcome.cursor.startPosition.offsetBytes).toBe(replayed);
  for (const { offsetBytes, data } of winner.log.slice(replayed)) {
    target.bytes.set(data, offsetBytes);
  }
  expect(await catchUpDone(cursors, position(winner.log.length))).toBe(true);
  return Buffer.compare(target.bytes, winner.view.bytes) === 0;
}

test("targeted repair: the loser's named blocks copied + replay from the split = the winner",
  async () => {
    await fc.assert(fc.asyncProperty(
      fc.integer({ min: 0, max: 2 ** 31 - 1 }), fc.integer({ min: 1, max: 70 }),
      fc.integer({ min: 0, max: 10 }), fc.integer({ min: 0, max: 12 }),
      fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 3 }),
      async (seed, sizeBlocks, common, loserWrites, winnerWrites, interruptions) => {
        expect(await targetedRepair(seed, sizeBlocks, common, loserWrites, winnerWrites,
          interruptions)).toBe(true);
      },
    ), propertyParameters("targeted repair equals the winner", 200));
  });

test("a repair that copies none of the loser's blocks (the wrong plan) leaves them diverged",
  async () => {
    // The negative control: the checker sees a divergent block that neither copy nor replay fix.
    expect(await targetedRepair(5, 64, 3, 6, 0, 0, false)).toBe(false);
  });
