/** NBD payload buffers in mapped memory, so the io engine reads and writes them without copying. */
import { assert } from "../lib/assert.ts";
import { AlignedBufferPool, alignedAddressOf } from "./io/aligned.ts";

/**
 * Size classes (slot bytes, slot count). Address space is reserved up front; RAM is used only
 * for slots that were touched. A request larger than the biggest class uses the heap.
 */
export const payloadPoolClasses: ReadonlyArray<readonly [number, number]> = [
  [8 * 1024, 512],
  [64 * 1024, 256],
  [1024 * 1024 + 64 * 1024, 128],
];

/** The shape of the NBD server's `PayloadBuffers` (src/nbd/payload-buffers.ts), plus close. */
export interface PayloadPool {
  acquire(sizeBytes: number): Uint8Array | undefined;
  release(buffer: Uint8Array): void;
  close(): boolean;
}

export function createPayloadPool(): PayloadPool {
  const pools = payloadPoolClasses.map(([slotBytes, slots]) =>
    new AlignedBufferPool(slotBytes, slots));
  /** Which pool each handed-out buffer came from, by its address. */
  const owners = new Map<number, AlignedBufferPool>();
  return {
    acquire(sizeBytes) {
      const pool = pools.find((candidate) => candidate.slotBytes >= sizeBytes);
      const slot = pool?.acquire();
      if (pool === undefined || slot === undefined) return undefined;
      owners.set(alignedAddressOf(slot)!, pool);
      return slot.subarray(0, sizeBytes);
    },
    release(buffer) {
      const address = alignedAddressOf(buffer);
      const pool = address === undefined ? undefined : owners.get(address);
      assert(pool !== undefined, "a released payload buffer came from this pool");
      owners.delete(address!);
      pool.release(buffer);
    },
    /** Unmaps once every buffer is back; with some still out (a request the device never
     * finished), the mapping stays until the process exits rather than pull memory away. */
    close() {
      if (owners.size > 0) return false;
      for (const pool of pools) pool.close();
      return true;
    },
  };
}
