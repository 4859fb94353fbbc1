/** The bookkeeping of one operation and one batch in the uring engine, and how results settle. */
import { assert } from "../../lib/assert.ts";
import type { IoOperation, IoResult } from "../types.ts";
import type { AlignedBufferPool } from "./aligned.ts";
import {
  cancelled, errnoAgain, errnoCancelled, errnoInterrupted, failed, retriesMax, succeeded,
} from "./outcome.ts";

export interface Batch {
  readonly operations: readonly IoOperation[];
  readonly results: Array<IoResult | undefined>;
  readonly ordered: boolean;
  /** SubmitOptions.background: the entries carry IOSQE_ASYNC. */
  readonly background: boolean;
  readonly resolve: (results: IoResult[]) => void;
  unresolvedCount: number;
  /** Ordered batches: the first operation without a result; the next chain starts here. */
  cursor: number;
  /** Ordered batches: the linked chain now in the kernel, in order. */
  chain: Task[];
  chainPendingCount: number;
}

/** One operation on its way through the ring, possibly in several segments. */
export interface Task {
  readonly batch: Batch;
  readonly index: number;
  readonly operation: IoOperation;
  /** Bytes transferred by earlier segments. */
  doneBytes: number;
  retryCount: number;
  /** Bytes asked for by the segment now in flight. */
  segmentBytes: number;
  /** The pool buffer the segment bounces through, when the caller's buffer is GC memory. */
  bounce: Uint8Array | undefined;
  bouncePool: AlignedBufferPool | undefined;
  /** The kernel's result for the segment last completed (chains settle once all are back). */
  outcome: number;
}

export function createBatch(
  operations: readonly IoOperation[],
  ordered: boolean,
  resolve: (results: IoResult[]) => void,
  background = false,
): Batch {
  return {
    operations, ordered, background, resolve,
    results: new Array<IoResult | undefined>(operations.length).fill(undefined),
    unresolvedCount: operations.length,
    cursor: 0,
    chain: [],
    chainPendingCount: 0,
  };
}

export function createTask(batch: Batch, index: number): Task {
  const operation = batch.operations[index];
  assert(operation !== undefined, "a task is one of its batch's operations");
  return {
    batch, index, operation,
    doneBytes: 0, retryCount: 0, segmentBytes: 0,
    bounce: undefined, bouncePool: undefined, outcome: 0,
  };
}

/** Records the final result of one operation; resolves the batch with its last one. */
export function finish(batch: Batch, index: number, result: IoResult): void {
  assert(batch.results[index] === undefined, "every operation gets exactly one result");
  assert(batch.unresolvedCount > 0, "a batch has unresolved operations left");
  batch.results[index] = result;
  batch.unresolvedCount--;
  if (batch.unresolvedCount === 0) batch.resolve(batch.results as IoResult[]);
}

/** Cancels every operation of a batch from `from` on that has no result yet. */
export function cancelRest(batch: Batch, from: number, why: string): void {
  for (let index = from; index < batch.operations.length; index++) {
    if (batch.results[index] === undefined) finish(batch, index, cancelled(why));
  }
  batch.cursor = batch.operations.length;
}

export function operationLength(operation: IoOperation): number {
  return operation.kind === "fsync" || operation.kind === "fallocate"
    ? 0 : operation.buffer.length;
}

/**
 * Applies a segment's kernel result (`outcome`): "done" (result recorded), "again" (a short
 * transfer, the next segment, or EAGAIN/EINTR: submit once more) or "failed" (error recorded).
 */
export function settle(task: Task, closing: boolean): "done" | "again" | "failed" {
  const { operation, outcome } = task;
  if (outcome < 0) {
    const errno = -outcome;
    const transient = errno === errnoAgain || errno === errnoInterrupted;
    if (transient && task.retryCount < retriesMax && !closing) {
      task.retryCount++;
      return "again";
    }
    const result = closing && (transient || errno === errnoCancelled)
      ? cancelled("the engine closed")
      : failed(errno, operation);
    finish(task.batch, task.index, result);
    return "failed";
  }
  if (operation.kind === "fsync" || operation.kind === "fallocate") {
    finish(task.batch, task.index, succeeded(0));
    return "done";
  }
  assert(outcome <= task.segmentBytes, "the kernel never transfers more than asked");
  if (operation.kind === "write" && outcome === 0 && task.segmentBytes > 0) {
    finish(task.batch, task.index, failed(5, operation));
    return "failed";
  }
  task.doneBytes += outcome;
  task.retryCount = 0;
  const endOfFile = operation.kind === "read" && outcome === 0;
  if (endOfFile || task.doneBytes === operation.buffer.length) {
    finish(task.batch, task.index, succeeded(task.doneBytes));
    return "done";
  }
  if (closing) {
    const why = `the engine closed after ${task.doneBytes} of ${operation.buffer.length} bytes`;
    finish(task.batch, task.index, cancelled(why));
    return "failed";
  }
  return "again";
}
