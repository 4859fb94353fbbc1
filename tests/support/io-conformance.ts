/** One behaviour suite every IoEngine runs: a model-checked property plus the error paths. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  closeSync, constants, ftruncateSync, mkdtempSync, openSync, readSync, rmSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { AlignedBufferPool, allocateAlignedBuffer } from "../../src/platform/io/aligned.ts";
import type {
  FallocateMode, IoEngine, IoOperation, IoResult,
} from "../../src/platform/types.ts";
import { propertyParameters } from "./property.ts";

/** The file the property works on: slots keep an unordered batch's operations apart. */
const slotBytes = 16 * 1024;
const slotCount = 16;
const regionBytes = slotBytes * slotCount;
/** Reads in the last slot may run this far past the end of the file (short reads). */
const pastEndBytes = 8 * 1024;
const closedFd = 9999;

type Step =
  | { kind: "write"; offset: number; lengthBytes: number; seed: number; aligned: boolean }
  | { kind: "read"; offset: number; lengthBytes: number; aligned: boolean }
  | { kind: "fsync"; dataOnly: boolean }
  | { kind: "fallocate"; offset: number; lengthBytes: number; mode: FallocateMode }
  | { kind: "bad" };

interface BatchPlan {
  readonly ordered: boolean;
  readonly steps: Step[];
}

function stepInSlot(slot: number): fc.Arbitrary<Step> {
  const end = slot === slotCount - 1 ? regionBytes + pastEndBytes : (slot + 1) * slotBytes;
  const span = fc.integer({ min: slot * slotBytes, max: end - 1 }).chain((offset) =>
    fc.record({
      offset: fc.constant(offset),
      lengthBytes: fc.integer({ min: 1, max: end - offset }),
    }));
  const writeEnd = (slot + 1) * slotBytes;
  const writeSpan = fc.integer({ min: slot * slotBytes, max: writeEnd - 1 }).chain((offset) =>
    fc.record({
      offset: fc.constant(offset),
      lengthBytes: fc.integer({ min: 1, max: writeEnd - offset }),
    }));
  return fc.oneof(
    fc.record({ span: writeSpan, seed: fc.integer({ min: 0, max: 255 }), aligned: fc.boolean() })
      .map(({ span: { offset, lengthBytes }, seed, aligned }): Step =>
        ({ kind: "write", offset, lengthBytes, seed, aligned })),
    fc.record({ span, aligned: fc.boolean() }).map(({ span: { offset, lengthBytes }, aligned }):
      Step => ({ kind: "read", offset, lengthBytes, aligned })),
    fc.record({ span: writeSpan, mode: fc.constantFrom<FallocateMode>("punch-hole", "zero-range") })
      .map(({ span: { offset, lengthBytes }, mode }): Step =>
        ({ kind: "fallocate", offset, lengthBytes, mode })),
  );
}

const extraStep: fc.Arbitrary<Step> = fc.oneof(
  { weight: 4, arbitrary: fc.boolean().map((dataOnly): Step => ({ kind: "fsync", dataOnly })) },
  { weight: 1, arbitrary: fc.constant<Step>({ kind: "bad" }) },
);

/** Unordered batches touch distinct slots (their order is not defined); ordered ones anything. */
const batchPlan: fc.Arbitrary<BatchPlan> = fc.boolean().chain((ordered) => {
  const slots = ordered
    ? fc.array(fc.integer({ min: 0, max: slotCount - 1 }), { minLength: 1, maxLength: 10 })
    : fc.uniqueArray(fc.integer({ min: 0, max: slotCount - 1 }), { minLength: 1, maxLength: 10 });
  return fc.record({
    ordered: fc.constant(ordered),
    steps: fc.tuple(slots.chain((list) => fc.tuple(...list.map(stepInSlot))),
      fc.array(extraStep, { maxLength: 2 }))
      .chain(([data, extra]) => fc.shuffledSubarray([...data, ...extra],
        { minLength: data.length + extra.length })),
  });
});

/** Aligned buffers for the property's operations, recycled after every batch. */
const propertyPool = {
  pool: undefined as AlignedBufferPool | undefined,
  taken: [] as Uint8Array[],
};

function alignedBuffer(lengthBytes: number): Uint8Array {
  if (lengthBytes > slotBytes * 2) return allocateAlignedBuffer(lengthBytes);
  propertyPool.pool ??= new AlignedBufferPool(slotBytes * 2, 128);
  const slot = propertyPool.pool.acquire();
  if (slot === undefined) throw new Error("the property's buffer pool ran dry");
  propertyPool.taken.push(slot);
  return slot.subarray(0, lengthBytes);
}

function releasePropertyBuffers(): void {
  for (const slot of propertyPool.taken.splice(0)) propertyPool.pool!.release(slot);
}

function fill(lengthBytes: number, seed: number, aligned: boolean): Uint8Array {
  const buffer = aligned ? alignedBuffer(lengthBytes) : new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) buffer[index] = (seed + index * 13) & 255;
  return buffer;
}

function toOperation(step: Step, fd: number): IoOperation {
  switch (step.kind) {
    case "write":
      return { kind: "write", fd, offset: step.offset,
        buffer: fill(step.lengthBytes, step.seed, step.aligned) };
    case "read":
      return { kind: "read", fd, offset: step.offset,
        buffer: step.aligned ? alignedBuffer(step.lengthBytes)
          : new Uint8Array(step.lengthBytes) };
    case "fsync":
      return { kind: "fsync", fd, dataOnly: step.dataOnly };
    case "fallocate":
      return { kind: "fallocate", fd, offset: step.offset, lengthBytes: step.lengthBytes,
        mode: step.mode };
    case "bad":
      return { kind: "read", fd: closedFd, offset: 0, buffer: new Uint8Array(16) };
  }
}

/** Applies one operation to the model; returns the result the engine must give. */
function applyToModel(model: Uint8Array, operation: IoOperation): IoResult {
  if (operation.fd === closedFd) return { ok: false, errno: "EBADF", message: "" };
  if (operation.kind === "fsync") return { ok: true, bytes: 0 };
  if (operation.kind === "fallocate") {
    model.fill(0, operation.offset, operation.offset + operation.lengthBytes);
    return { ok: true, bytes: 0 };
  }
  if (operation.kind === "write") {
    model.set(operation.buffer, operation.offset);
    return { ok: true, bytes: operation.buffer.length };
  }
  return { ok: true, bytes: Math.max(0, Math.min(operation.buffer.length,
    model.length - operation.offset)) };
}

function expectSameOutcome(actual: IoResult | undefined, expected: IoResult): void {
  expect(actual?.ok).toBe(expected.ok);
  if (expected.ok && actual?.ok) expect(actual.bytes).toBe(expected.bytes);
  if (!expected.ok && actual && !actual.ok) expect(actual.errno).toBe(expected.errno);
}

/** Checks a batch's results against the model (reads compare content too). */
function checkBatch(
  model: Uint8Array, operations: IoOperation[], results: IoResult[], ordered: boolean,
): void {
  expect(results.length).toBe(operations.length);
  let failed = false;
  operations.forEach((operation, index) => {
    const expected: IoResult = failed
      ? { ok: false, errno: "ECANCELED", message: "" }
      : applyToModel(model, operation);
    expectSameOutcome(results[index], expected);
    if (ordered && !expected.ok) failed = true;
    if (operation.kind === "read" && expected.ok && operation.fd !== closedFd) {
      const from = operation.offset;
      const wanted = model.subarray(from, from + expected.bytes);
      expect(Buffer.compare(operation.buffer.subarray(0, expected.bytes), wanted)).toBe(0);
    }
  });
}

function slotsOf(plan: BatchPlan): Set<number> {
  const slots = new Set<number>();
  for (const step of plan.steps) {
    if (step.kind === "fsync" || step.kind === "bad") continue;
    slots.add(Math.min(slotCount - 1, Math.floor(step.offset / slotBytes)));
  }
  return slots;
}

/** Consecutive batches on disjoint slots run at once; their results cannot depend on order. */
function concurrentGroups(plans: readonly BatchPlan[]): BatchPlan[][] {
  const groups: BatchPlan[][] = [];
  let current: BatchPlan[] = [];
  let taken = new Set<number>();
  for (const plan of plans) {
    const slots = slotsOf(plan);
    if ([...slots].some((slot) => taken.has(slot))) {
      groups.push(current);
      current = [];
      taken = new Set();
    }
    current.push(plan);
    for (const slot of slots) taken.add(slot);
  }
  groups.push(current);
  return groups.filter((group) => group.length > 0);
}

/**
 * Registers the suite under `describe(name)`; `open` makes a fresh engine per test. With a
 * `skipReason` (the engine cannot exist here) the suite is listed as skipped, with the reason.
 */
export function runIoEngineSuite(
  name: string, open: () => IoEngine, propertyRuns = 25, skipReason?: string,
): void {
  const title = `io engine conformance: ${name}`;
  if (skipReason !== undefined) {
    test.skip(`${title} (skipped: ${skipReason})`, () => {});
    return;
  }
  describe(title, () => {
    let directory = "";
    beforeAll(() => {
      directory = mkdtempSync(join(tmpdir(), "mars-io-"));
    });
    afterAll(() => rmSync(directory, { recursive: true, force: true }));

    test("random, partly concurrent batches of reads, writes, syncs match a model", async () => {
      const path = join(directory, "model.img");
      await fc.assert(fc.asyncProperty(fc.array(batchPlan, { minLength: 1, maxLength: 6 }),
        async (plans) => {
          const fd = openSync(path, constants.O_RDWR | constants.O_CREAT | constants.O_TRUNC);
          ftruncateSync(fd, regionBytes);
          const engine = open();
          try {
            const model = new Uint8Array(regionBytes);
            for (const group of concurrentGroups(plans)) {
              const submitted = group.map((plan) => {
                const operations = plan.steps.map((step) => toOperation(step, fd));
                const results = engine.submit(operations, { ordered: plan.ordered });
                return { plan, operations, results };
              });
              for (const { plan, operations, results } of submitted) {
                checkBatch(model, operations, await results, plan.ordered);
              }
              releasePropertyBuffers();
            }
            // What no read in a batch looked at must match too (a lost fallocate, a stray write).
            const final = new Uint8Array(regionBytes);
            readSync(fd, final, 0, regionBytes, 0);
            expect(Buffer.compare(final, model)).toBe(0);
          } finally {
            releasePropertyBuffers();
            await engine.close();
            closeSync(fd);
          }
        }), propertyParameters(`io engine ${name}: model`, propertyRuns));
    });

    test("large transfers from GC memory and from aligned buffers arrive whole", async () => {
      const engine = open();
      const fd = openSync(join(directory, "large.img"), "w+");
      try {
        const heap = fill(3 * 1024 * 1024 + 123, 7, false);
        const aligned = fill(2 * 1024 * 1024, 9, true);
        const written = await engine.submit([
          { kind: "write", fd, offset: 0, buffer: heap },
          { kind: "write", fd, offset: heap.length, buffer: aligned },
          { kind: "fsync", fd, dataOnly: true },
        ], { ordered: true });
        expect(written.map((result) => result.ok && result.bytes))
          .toEqual([heap.length, aligned.length, 0]);
        const back = new Uint8Array(heap.length + aligned.length + 4096);
        const [read] = await engine.submit([{ kind: "read", fd, offset: 0, buffer: back }]);
        expect(read).toEqual({ ok: true, bytes: heap.length + aligned.length });
        expect(Buffer.compare(back.subarray(0, heap.length), heap)).toBe(0);
        expect(Buffer.compare(back.subarray(heap.length, read!.ok ? read!.bytes : 0), aligned))
          .toBe(0);
      } finally {
        await engine.close();
        closeSync(fd);
      }
    });

    test("O_DIRECT: misalignment is an EINVAL result; the engine carries on; GC memory works",
      async () => {
      const engine = open();
      const fd = openSync(join(directory, "direct.img"),
        constants.O_RDWR | constants.O_CREAT | constants.O_DIRECT);
      try {
        const page = fill(4096, 3, true);
        const results = await engine.submit([
          { kind: "write", fd, offset: 100, buffer: page },
          { kind: "write", fd, offset: 0, buffer: page.subarray(0, 100) },
          { kind: "write", fd, offset: 4096, buffer: page },
        ]);
        expect(results.map((result) => result.ok ? "ok" : result.errno))
          .toEqual(["EINVAL", "EINVAL", "ok"]);
        const back = allocateAlignedBuffer(4096);
        const [read] = await engine.submit([{ kind: "read", fd, offset: 4096, buffer: back }]);
        expect(read).toEqual({ ok: true, bytes: 4096 });
        expect(Buffer.compare(back, page)).toBe(0);
        // GC memory, here deliberately not page-aligned, is bounced through aligned slots, so
        // it works on O_DIRECT files too.
        const heap = fill(8192 + 16, 5, false).subarray(16);
        const heapBack = new Uint8Array(8192 + 16).subarray(16);
        const bounced = await engine.submit([
          { kind: "write", fd, offset: 8192, buffer: heap },
          { kind: "read", fd, offset: 8192, buffer: heapBack },
        ], { ordered: true });
        expect(bounced).toEqual([{ ok: true, bytes: 8192 }, { ok: true, bytes: 8192 }]);
        expect(Buffer.compare(heapBack, heap)).toBe(0);
      } finally {
        await engine.close();
        closeSync(fd);
      }
    });

    test("a closed descriptor is EBADF for every kind; ordered batches cancel the rest",
      async () => {
        const engine = open();
        try {
          const buffer = new Uint8Array(512);
          const results = await engine.submit([
            { kind: "read", fd: closedFd, offset: 0, buffer },
            { kind: "write", fd: closedFd, offset: 0, buffer },
            { kind: "fsync", fd: closedFd, dataOnly: true },
            { kind: "fallocate", fd: closedFd, mode: "punch-hole", offset: 0, lengthBytes: 4096 },
          ]);
          expect(results.map((result) => result.ok ? "ok" : result.errno))
            .toEqual(["EBADF", "EBADF", "EBADF", "EBADF"]);
          const ordered = await engine.submit([
            { kind: "fsync", fd: closedFd, dataOnly: false },
            { kind: "read", fd: closedFd, offset: 0, buffer },
          ], { ordered: true });
          expect(ordered.map((result) => result.ok ? "ok" : result.errno))
            .toEqual(["EBADF", "ECANCELED"]);
          expect(results[0]!.ok ? "" : results[0]!.message).not.toBe("");
        } finally {
          await engine.close();
        }
      });

    test("concurrent ordered batches each read back what they wrote before", async () => {
      const engine = open();
      const fd = openSync(join(directory, "concurrent.img"), "w+");
      const regionBytesEach = 2 * 1024 * 1024;
      try {
        const batches = Array.from({ length: 40 }, (_, index) => {
          const lengthBytes = index % 10 === 0 ? 1536 * 1024 : 1 + ((index * 7919) % 100_000);
          const data = fill(lengthBytes, index, index % 3 === 0);
          const back = new Uint8Array(lengthBytes);
          const offset = index * regionBytesEach;
          // Every other batch in the background (io-wq with io_uring): same results.
          const done = engine.submit([
            { kind: "write", fd, offset, buffer: data },
            { kind: "fsync", fd, dataOnly: true },
            { kind: "read", fd, offset, buffer: back },
          ], { ordered: true, background: index % 2 === 1 });
          return { data, back, done };
        });
        for (const { data, back, done } of batches) {
          expect((await done).map((result) => result.ok)).toEqual([true, true, true]);
          expect(Buffer.compare(back, data)).toBe(0);
        }
      } finally {
        await engine.close();
        closeSync(fd);
      }
    });

    test("zero-length reads and writes succeed with 0 bytes, ordered or not", async () => {
      const engine = open();
      const fd = openSync(join(directory, "empty.img"), "w+");
      try {
        const empty = [new Uint8Array(0), allocateAlignedBuffer(4096).subarray(0, 0)];
        const operations: IoOperation[] = empty.flatMap((buffer) => [
          { kind: "write", fd, offset: 0, buffer },
          { kind: "read", fd, offset: 0, buffer },
        ]);
        for (const ordered of [false, true]) {
          const results = await engine.submit(operations, { ordered });
          expect(results).toEqual(operations.map(() => ({ ok: true, bytes: 0 })));
        }
      } finally {
        await engine.close();
        closeSync(fd);
      }
    });

    test("a full file system is ENOSPC, and the sync after it is cancelled", async () => {
      const mountPoint = mkdtempSync(join(tmpdir(), "mars-io-full-"));
      const mounted = Bun.spawnSync(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", mountPoint]);
      expect(mounted.exitCode).toBe(0);
      const engine = open();
      const fd = openSync(join(mountPoint, "full.img"), "w+");
      try {
        const results = await engine.submit([
          { kind: "write", fd, offset: 0, buffer: fill(2 * 1024 * 1024, 1, false) },
          { kind: "fsync", fd, dataOnly: true },
        ], { ordered: true });
        expect(results.map((result) => result.ok ? "ok" : result.errno))
          .toEqual(["ENOSPC", "ECANCELED"]);
      } finally {
        await engine.close();
        closeSync(fd);
        Bun.spawnSync(["umount", mountPoint]);
        rmSync(mountPoint, { recursive: true, force: true });
      }
    });

    test("close with operations in flight completes or cancels each exactly once", async () => {
      const engine = open();
      const fd = openSync(join(directory, "shutdown.img"), "w+");
      try {
        const pending: Array<Promise<IoResult[]>> = [];
        for (let index = 0; index < 300; index++) {
          const buffer = fill(64 * 1024, index, index % 2 === 0);
          pending.push(engine.submit([{ kind: "write", fd, offset: index * buffer.length,
            buffer }]));
          if (index % 30 === 0) {
            pending.push(engine.submit([
              { kind: "write", fd, offset: index * 4096, buffer: fill(4096, 1, false) },
              { kind: "fsync", fd, dataOnly: true },
              { kind: "read", fd, offset: 0, buffer: new Uint8Array(4096) },
            ], { ordered: true }));
          }
        }
        await new Promise((resolve) => setTimeout(resolve, 1));
        const closed = engine.close();
        const results = (await Promise.all(pending)).flat();
        await closed;
        expect(results.length).toBe(300 + 10 * 3);
        const outcomes = results.map((result) => result.ok ? "ok" : result.errno);
        expect(outcomes.filter((outcome) => outcome !== "ok" && outcome !== "ECANCELED"))
          .toEqual([]);
        const after = await engine.submit([{ kind: "fsync", fd, dataOnly: true }]);
        expect(after[0]!.ok ? "ok" : after[0]!.errno).toBe("ECANCELED");
      } finally {
        await engine.close();
        closeSync(fd);
      }
    });
  });
}
