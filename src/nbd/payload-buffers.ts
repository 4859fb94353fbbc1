/** Where request payloads and read replies live: the heap, or memory the io engine uses as is. */
import { assert } from "../lib/assert.ts";
import type { PayloadLease } from "../block/types.ts";

/**
 * Buffers for WRITE payloads and READ replies. A buffer goes back with `release` once the
 * device finished with it (writes; later when the device kept it under its lease) or the
 * connection took the bytes (replies).
 */
export interface PayloadBuffers {
  /** A buffer of exactly `sizeBytes`, or undefined when none is free (the heap steps in). */
  acquire(sizeBytes: number): Uint8Array | undefined;
  release(buffer: Uint8Array): void;
}

/** Plain heap allocation, nothing to give back. */
export const heapBuffers: PayloadBuffers = {
  acquire: (sizeBytes) => new Uint8Array(sizeBytes),
  release: () => {},
};

/**
 * A buffer from `buffers`, falling back to the heap; `release` is safe to call either way.
 * `lease` lets a device keep it past the request: it goes back once both let go.
 */
export function acquirePayload(buffers: PayloadBuffers, sizeBytes: number): Payload {
  return new Payload(buffers, buffers.acquire(sizeBytes), sizeBytes);
}

/** One request's buffer and who still holds it (one object: this runs for every READ). */
export class Payload implements PayloadLease {
  readonly bytes: Uint8Array;
  private holders = 1;
  private releasedByCaller = false;

  constructor(
    private readonly buffers: PayloadBuffers,
    private readonly pooled: Uint8Array | undefined,
    sizeBytes: number,
  ) {
    this.bytes = pooled ?? new Uint8Array(sizeBytes);
  }

  get lease(): PayloadLease {
    return this;
  }

  /** The caller is done with it (idempotent). */
  readonly release = (): void => {
    if (this.releasedByCaller) return;
    this.releasedByCaller = true;
    this.letGo();
  };

  keep(): () => void {
    assert(this.holders > 0, "a payload is kept only while someone holds it");
    this.holders++;
    let released = false;
    return () => {
      assert(!released, "a kept payload is released once");
      released = true;
      this.letGo();
    };
  }

  private letGo(): void {
    this.holders--;
    assert(this.holders >= 0, "a payload buffer is let go once per holder");
    if (this.holders === 0 && this.pooled !== undefined) this.buffers.release(this.pooled);
  }
}
