/** The portable IoEngine: node:fs positional I/O on the runtime's thread pool, for any kernel. */
// Same contract as the uring engine (docs/io-engine.md): one result per operation, ordered
// batches stop at the first failure, close() completes what runs and cancels what waits.
// Like the uring engine it never hands GC memory to the kernel: other buffers move through
// aligned bounce slots, so O_DIRECT behaves the same on both.
import * as fs from "node:fs";
import { promisify } from "node:util";
import { assert } from "../../lib/assert.ts";
import type { IoEngine, IoOperation, IoResult, SubmitOptions } from "../types.ts";
import { errnoOf } from "../errno.ts";
import { AlignedBufferPool, allocateAlignedBuffer, isAlignedBuffer } from "./aligned.ts";
import { allocateRange } from "./native.ts";
import { fallocateModeBits } from "./uring-abi.ts";
import { cancelled, checkBatch } from "./outcome.ts";

/** Operations running at once; more wait in submission order. */
export const portableInFlightMax = 64;
/** A GC-memory transfer moves through one aligned slot of this size at a time. */
export const portableBounceBytes = 1024 * 1024;

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);
const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);

export function createPortableEngine(): IoEngine {
  let inFlight = 0;
  let closing = false;
  const waiting: Array<() => void> = [];
  const idle: Array<() => void> = [];
  let bouncePool: AlignedBufferPool | undefined;
  /** One slot per operation in flight, so a slot is always free; mapped on first use. */
  const bounceSlots = () =>
    (bouncePool ??= new AlignedBufferPool(portableBounceBytes, portableInFlightMax));

  /** Runs `operation` once a slot is free; cancelled instead when the engine closed meanwhile. */
  async function slot(operation: IoOperation): Promise<IoResult> {
    while (inFlight >= portableInFlightMax && !closing) {
      await new Promise<void>((go) => waiting.push(go));
    }
    if (closing) return cancelled("the engine closed before it started");
    inFlight++;
    assert(inFlight <= portableInFlightMax, "in-flight operations stay within the limit");
    try {
      return await perform(operation, bounceSlots);
    } finally {
      inFlight--;
      waiting.shift()?.();
      if (inFlight === 0) for (const go of idle.splice(0)) go();
    }
  }

  return {
    name: "portable",
    allocateBuffer: allocateAlignedBuffer,
    async submit(operations: readonly IoOperation[], options?: SubmitOptions) {
      checkBatch(operations);
      if (closing) return operations.map(() => cancelled("the engine is closed"));
      if (options?.ordered) return runOrdered(operations, slot);
      return Promise.all(operations.map(slot));
    },
    async close() {
      closing = true;
      for (const go of waiting.splice(0)) go();
      while (inFlight > 0) await new Promise<void>((go) => idle.push(go));
      bouncePool?.close();
      bouncePool = undefined;
    },
  };
}

async function runOrdered(
  operations: readonly IoOperation[],
  run: (operation: IoOperation) => Promise<IoResult>,
): Promise<IoResult[]> {
  const results: IoResult[] = [];
  for (const operation of operations) {
    const failed = results.some((result) => !result.ok);
    const why = "an earlier operation in the batch failed";
    results.push(failed ? cancelled(why) : await run(operation));
  }
  return results;
}

async function perform(
  operation: IoOperation, bounceSlots: () => AlignedBufferPool,
): Promise<IoResult> {
  try {
    switch (operation.kind) {
      case "read":
      case "write":
        return { ok: true, bytes: await transfer(operation, bounceSlots) };
      case "fsync":
        await (operation.dataOnly ? fdatasyncAsync(operation.fd) : fsyncAsync(operation.fd));
        return { ok: true, bytes: 0 };
      case "fallocate": {
        // On this thread: node:fs has no fallocate (the fallback engine accepts the stall).
        const failure = allocateRange(operation.fd, fallocateModeBits[operation.mode],
          operation.offset, operation.lengthBytes);
        return failure === undefined ? { ok: true, bytes: 0 }
          : { ok: false, errno: failure.name, message: `fallocate: ${failure.message}` };
      }
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, errno: errnoOf(error), message };
  }
}

type PositionalOperation = Extract<IoOperation, { kind: "read" | "write" }>;

/** The whole transfer; a GC-memory buffer goes slot by slot through an aligned bounce slot. */
async function transfer(
  operation: PositionalOperation, bounceSlots: () => AlignedBufferPool,
): Promise<number> {
  const { fd, buffer, offset } = operation;
  const reading = operation.kind === "read";
  if (isAlignedBuffer(buffer)) {
    return reading ? readInto(fd, buffer, offset) : writeFrom(fd, buffer, offset);
  }
  const pool = bounceSlots();
  const slot = pool.acquire();
  assert(slot !== undefined, "there is a bounce slot for every operation in flight");
  try {
    let done = 0;
    while (done < buffer.length) {
      const window = slot.subarray(0, Math.min(slot.length, buffer.length - done));
      if (!reading) {
        window.set(buffer.subarray(done, done + window.length));
        done += await writeFrom(fd, window, offset + done);
        continue;
      }
      const count = await readInto(fd, window, offset + done);
      buffer.set(window.subarray(0, count), done);
      done += count;
      if (count < window.length) break; // end of file
    }
    return done;
  } finally {
    pool.release(slot);
  }
}

/** Reads until `target` is full or end of file. */
async function readInto(fd: number, target: Uint8Array, offset: number): Promise<number> {
  let done = 0;
  while (done < target.length) {
    const remaining = target.length - done;
    const { bytesRead: count } = await readAsync(fd, target, done, remaining, offset + done);
    if (count === 0) break;
    done += count;
  }
  assert(done <= target.length, "a read never returns more than asked");
  return done;
}

/** Writes all of `source`, resuming after short writes. */
async function writeFrom(fd: number, source: Uint8Array, offset: number): Promise<number> {
  let done = 0;
  while (done < source.length) {
    const { bytesWritten: count } = await writeAsync(
      fd, source, done, source.length - done, offset + done,
    );
    if (count === 0) throw Object.assign(new Error("write made no progress"), { code: "EIO" });
    done += count;
  }
  return done;
}
