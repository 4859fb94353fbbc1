/** The portable IoEngine: node:fs positional I/O on the runtime's thread pool, for any kernel. */
// Same contract as the uring engine (docs/io-engine.md): one result per operation, ordered
// batches stop at the first failure, close() completes what runs and cancels what waits.
// Buffers go to the kernel as they are; for O_DIRECT pass aligned ones (allocateBuffer).
import * as fs from "node:fs";
import { promisify } from "node:util";
import { assert } from "../../lib/assert.ts";
import type { IoEngine, IoOperation, IoResult, SubmitOptions } from "../types.ts";
import { errnoOf } from "../errno.ts";
import { allocateAlignedBuffer } from "./aligned.ts";
import { cancelled, checkBatch } from "./outcome.ts";

/** Operations running at once; more wait in submission order. */
export const portableInFlightMax = 64;

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);
const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);

export function createPortableEngine(): IoEngine {
  let inFlight = 0;
  let closing = false;
  const waiting: Array<() => void> = [];
  const idle: Array<() => void> = [];

  /** Runs `operation` once a slot is free; cancelled instead when the engine closed meanwhile. */
  async function slot(operation: IoOperation): Promise<IoResult> {
    while (inFlight >= portableInFlightMax && !closing) {
      await new Promise<void>((go) => waiting.push(go));
    }
    if (closing) return cancelled("the engine closed before it started");
    inFlight++;
    assert(inFlight <= portableInFlightMax, "in-flight operations stay within the limit");
    try {
      return await perform(operation);
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

async function perform(operation: IoOperation): Promise<IoResult> {
  try {
    switch (operation.kind) {
      case "read":
        return { ok: true, bytes: await readFully(operation) };
      case "write":
        return { ok: true, bytes: await writeFully(operation) };
      case "fsync":
        await (operation.dataOnly ? fdatasyncAsync(operation.fd) : fsyncAsync(operation.fd));
        return { ok: true, bytes: 0 };
    }
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { ok: false, errno: errnoOf(error), message };
  }
}

type PositionalOperation = Extract<IoOperation, { kind: "read" | "write" }>;

/** Reads until the buffer is full or end of file. */
async function readFully({ fd, buffer, offset }: PositionalOperation): Promise<number> {
  let done = 0;
  while (done < buffer.length) {
    const remaining = buffer.length - done;
    const { bytesRead: count } = await readAsync(fd, buffer, done, remaining, offset + done);
    if (count === 0) break;
    done += count;
  }
  assert(done <= buffer.length, "a read never returns more than asked");
  return done;
}

/** Writes the whole buffer, resuming after short writes. */
async function writeFully({ fd, buffer, offset }: PositionalOperation): Promise<number> {
  let done = 0;
  while (done < buffer.length) {
    const { bytesWritten: count } = await writeAsync(
      fd, buffer, done, buffer.length - done, offset + done,
    );
    assert(count > 0, "a write makes progress or fails");
    done += count;
  }
  return done;
}
