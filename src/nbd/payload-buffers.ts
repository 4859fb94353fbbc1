/** Where request payloads and read replies live: the heap, or memory the io engine uses as is. */

/**
 * Buffers for WRITE payloads and READ replies. A buffer goes back with `release` once the
 * device finished with it (writes) or the connection took the bytes (replies), so devices
 * must copy what they keep after a request resolves (every mars layer does).
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

/** A buffer from `buffers`, falling back to the heap; `release` is safe to call either way. */
export function acquirePayload(
  buffers: PayloadBuffers, sizeBytes: number,
): { bytes: Uint8Array; release: () => void } {
  const pooled = buffers.acquire(sizeBytes);
  if (pooled === undefined) return { bytes: new Uint8Array(sizeBytes), release: () => {} };
  return { bytes: pooled, release: () => buffers.release(pooled) };
}
