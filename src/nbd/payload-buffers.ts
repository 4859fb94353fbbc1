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
export function acquirePayload(
  buffers: PayloadBuffers, sizeBytes: number,
): { bytes: Uint8Array; release: () => void; lease: PayloadLease } {
  const pooled = buffers.acquire(sizeBytes);
  const bytes = pooled ?? new Uint8Array(sizeBytes);
  let holders = 1;
  const letGo = () => {
    holders--;
    assert(holders >= 0, "a payload buffer is let go once per holder");
    if (holders === 0 && pooled !== undefined) buffers.release(pooled);
  };
  const lease: PayloadLease = {
    keep() {
      assert(holders > 0, "a payload is kept only while someone holds it");
      holders++;
      let released = false;
      return () => {
        assert(!released, "a kept payload is released once");
        released = true;
        letGo();
      };
    },
  };
  let releasedByCaller = false;
  const release = () => {
    if (releasedByCaller) return;
    releasedByCaller = true;
    letGo();
  };
  return { bytes, release, lease };
}
