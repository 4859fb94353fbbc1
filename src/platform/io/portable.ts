/** The portable IoEngine: node:fs positional I/O on the runtime's thread pool, for any kernel. */
import * as fs from "node:fs";
import { promisify } from "node:util";
import { assert } from "../../lib/assert.ts";
import type { IoEngine, IoOperation, IoResult, SubmitOptions } from "../types.ts";
import { errnoOf } from "../errno.ts";

/** Operations running at once; more wait in submission order. */
export const portableInFlightMax = 64;

const readAsync = promisify(fs.read);
const writeAsync = promisify(fs.write);
const fsyncAsync = promisify(fs.fsync);
const fdatasyncAsync = promisify(fs.fdatasync);

export function createPortableEngine(): IoEngine {
  let inFlight = 0;
  let closed = false;
  const waiting: Array<() => void> = [];

  async function slot<T>(work: () => Promise<T>): Promise<T> {
    while (inFlight >= portableInFlightMax) await new Promise<void>((go) => waiting.push(go));
    inFlight++;
    try {
      return await work();
    } finally {
      inFlight--;
      waiting.shift()?.();
    }
  }

  return {
    name: "portable",
    async submit(operations: readonly IoOperation[], options?: SubmitOptions) {
      if (closed) return operations.map(() => cancelled("engine closed"));
      if (options?.ordered) return runOrdered(operations, (op) => slot(() => perform(op)));
      return Promise.all(operations.map((op) => slot(() => perform(op))));
    },
    async close() {
      closed = true;
      while (inFlight > 0) await new Promise<void>((go) => waiting.push(go));
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

function cancelled(why: string): IoResult {
  return { ok: false, errno: "ECANCELED", message: `cancelled: ${why}` };
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
