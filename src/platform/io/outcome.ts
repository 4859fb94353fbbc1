/** What both io engines share: the batch contract's preconditions and the shape of results. */
import { assert, assertCount } from "../../lib/assert.ts";
import { ioBatchOperationsMax, type IoOperation, type IoResult } from "../types.ts";
import { errnoMessage, errnoName } from "./native.ts";

/** Tries after EAGAIN or EINTR before the error is reported to the caller. */
export const retriesMax = 8;

export const errnoCancelled = 125;
export const errnoAgain = 11;
export const errnoInterrupted = 4;

export function succeeded(bytes: number): IoResult {
  return { ok: true, bytes };
}

export function cancelled(why: string): IoResult {
  return { ok: false, errno: "ECANCELED", message: `cancelled: ${why}` };
}

/** A failure from a negative kernel result, naming the operation. */
export function failed(errno: number, operation: IoOperation): IoResult {
  const where = operation.kind === "fsync" ? "" : ` at offset ${operation.offset}`;
  const message = `${errnoMessage(errno)} (${operation.kind} fd ${operation.fd}${where})`;
  return { ok: false, errno: errnoName(errno), message };
}

/** The caller's side of the contract: bugs, so assertions, not error results. */
export function checkBatch(operations: readonly IoOperation[]): void {
  assert(operations.length <= ioBatchOperationsMax, "a batch stays within ioBatchOperationsMax");
  for (const operation of operations) {
    assert(Number.isInteger(operation.fd) && operation.fd >= 0, "an operation names an fd");
    if (operation.kind === "fsync") continue;
    if (operation.kind === "fallocate") {
      assertCount(operation.offset, "operation offset");
      assert(Number.isSafeInteger(operation.lengthBytes) && operation.lengthBytes > 0,
        "a fallocate range is not empty");
      continue;
    }
    assertCount(operation.offset, "operation offset");
    assert(operation.buffer instanceof Uint8Array, "an operation's buffer is a Uint8Array");
  }
}
