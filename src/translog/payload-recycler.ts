/** Reuses the overlay's copies of large write payloads: fresh large allocations fault in pages. */
import { assert } from "../lib/assert.ts";

/** Payloads smaller than this are copied into fresh memory (cheap at that size); the default. */
export const recycledPayloadBytesMin = 64 * 1024;
/** Bytes of spare copies kept for reuse; beyond it a released copy is left to the GC. */
export const recycledSpareBytesMax = 16 * 1024 * 1024;
/** Copies waiting for running reads to end before reuse; beyond it they go to the GC. */
export const recycledRetiredBuffersMax = 1024;

/**
 * A copy is reused only when nothing can still look at it: it left the overlay (written back
 * or superseded, so writeback is done with it) and every read that started before that has
 * ended (a read takes its overlay entries when it starts and applies them when the disk read
 * is done). Reads that start later cannot find the entry any more.
 */
export class PayloadRecycler {
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;
  private retired: Uint8Array[] = [];
  private readsInFlight = 0;

  constructor(private readonly payloadBytesMin = recycledPayloadBytesMin) {
    assert(payloadBytesMin >= 1, "empty payloads are not recycled");
  }

  /** A private copy of `data` the overlay may keep. */
  copy(data: Uint8Array): Uint8Array {
    const reused = data.length >= this.payloadBytesMin
      ? this.spare.get(data.length)?.pop() : undefined;
    if (reused === undefined) return data.slice();
    this.spareBytes -= reused.length;
    assert(this.spareBytes >= 0, "spare bytes never negative");
    reused.set(data);
    return reused;
  }

  readStarted(): void {
    this.readsInFlight++;
  }

  readEnded(): void {
    this.readsInFlight--;
    assert(this.readsInFlight >= 0, "reads end once each");
    if (this.readsInFlight > 0 || this.retired.length === 0) return;
    const retired = this.retired;
    this.retired = [];
    for (const buffer of retired) this.keep(buffer);
  }

  /** `buffer` (from `copy`) left the overlay. */
  release(buffer: Uint8Array): void {
    if (buffer.length < this.payloadBytesMin || buffer.byteOffset !== 0 ||
        buffer.byteLength !== buffer.buffer.byteLength) {
      return;
    }
    if (this.readsInFlight === 0) this.keep(buffer);
    else if (this.retired.length < recycledRetiredBuffersMax) this.retired.push(buffer);
  }

  private keep(buffer: Uint8Array): void {
    if (this.spareBytes + buffer.length > recycledSpareBytesMax) return;
    let list = this.spare.get(buffer.length);
    if (list === undefined) this.spare.set(buffer.length, (list = []));
    list.push(buffer);
    this.spareBytes += buffer.length;
  }
}
