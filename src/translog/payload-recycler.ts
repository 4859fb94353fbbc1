/** The overlay's payloads: leased buffers kept as they are, copies reused; freed after reads. */
import { assert } from "../lib/assert.ts";
import type { PayloadLease } from "../block/types.ts";

/** Payloads smaller than this are copied into fresh memory (cheap at that size); the default. */
export const recycledPayloadBytesMin = 64 * 1024;
/** Bytes of spare copies kept for reuse; beyond it a released copy is left to the GC. */
export const recycledSpareBytesMax = 16 * 1024 * 1024;
/** Copies waiting for running reads to end before reuse; beyond it they go to the GC. */
export const recycledRetiredBuffersMax = 1024;
/** Leased buffers waiting for running reads to end (each overlay entry holds one at most). */
export const retiredLeasesMax = 1024 * 1024;
/** Reads in flight at once (the NBD window bounds them far below). */
export const readsInFlightMax = 65536;

interface Retired {
  readonly buffer: Uint8Array;
  /** Reads with a ticket up to this one started before it left the overlay. */
  readonly lastTicket: number;
  readonly letGo: (() => void) | undefined;
}

/**
 * A payload is freed (a lease given back, a copy reused) only when nothing can still look at
 * it: it left the overlay (written back or superseded, so writeback is done with it) and every
 * read that started before that has ended (a read takes its overlay entries when it starts and
 * applies them when the disk read is done). Reads that start later cannot find the entry.
 * Reads carry tickets, so a steady stream of reads never holds a payload forever.
 */
export class PayloadRecycler {
  private readonly spare = new Map<number, Uint8Array[]>();
  private spareBytes = 0;
  private readonly leases = new Map<Uint8Array, () => void>();
  private retired: Retired[] = [];
  private retiredCopies = 0;
  /** Tickets of the reads in flight, oldest first (a Set keeps insertion order). */
  private readonly readsInFlight = new Set<number>();
  private lastTicket = 0;

  constructor(private readonly payloadBytesMin = recycledPayloadBytesMin) {
    assert(payloadBytesMin >= 1, "empty payloads are not recycled");
  }

  /** What the overlay keeps of `data`: the buffer itself under a lease, else a private copy. */
  keep(data: Uint8Array, lease: PayloadLease | undefined): Uint8Array {
    if (lease === undefined || data.length === 0) return this.copy(data);
    assert(!this.leases.has(data), "a buffer is leased once at a time");
    this.leases.set(data, lease.keep());
    return data;
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

  /** A read takes its overlay entries now; returns its ticket for `readEnded`. */
  readStarted(): number {
    assert(this.readsInFlight.size < readsInFlightMax, "reads in flight within their limit");
    this.lastTicket++;
    this.readsInFlight.add(this.lastTicket);
    return this.lastTicket;
  }

  readEnded(ticket: number): void {
    const known = this.readsInFlight.delete(ticket);
    assert(known, "reads end once each");
    if (this.retired.length === 0) return;
    const oldest = this.oldestReadTicket();
    let freed = 0;
    while (freed < this.retired.length && this.retired[freed]!.lastTicket < oldest) freed++;
    if (freed === 0) return;
    const ready = this.retired.slice(0, freed);
    this.retired = this.retired.slice(freed);
    for (const entry of ready) {
      if (entry.letGo === undefined) this.retiredCopies--;
      this.free(entry);
    }
  }

  /** `buffer` (from `keep` or `copy`) left the overlay. */
  release(buffer: Uint8Array): void {
    const letGo = this.leases.get(buffer);
    if (letGo !== undefined) this.leases.delete(buffer);
    const entry: Retired = { buffer, lastTicket: this.lastTicket, letGo };
    if (this.readsInFlight.size === 0) {
      this.free(entry);
    } else if (letGo !== undefined) {
      assert(this.retired.length < retiredLeasesMax, "retired leases within their limit");
      this.retired.push(entry);
    } else if (this.reusable(buffer) && this.retiredCopies < recycledRetiredBuffersMax) {
      this.retiredCopies++;
      this.retired.push(entry);
    }
  }

  private oldestReadTicket(): number {
    for (const ticket of this.readsInFlight) return ticket;
    return Number.POSITIVE_INFINITY;
  }

  private free(entry: Retired): void {
    if (entry.letGo !== undefined) {
      entry.letGo();
      return;
    }
    if (this.reusable(entry.buffer)) this.keepSpare(entry.buffer);
  }

  private reusable(buffer: Uint8Array): boolean {
    return buffer.length >= this.payloadBytesMin && buffer.byteOffset === 0 &&
      buffer.byteLength === buffer.buffer.byteLength;
  }

  private keepSpare(buffer: Uint8Array): void {
    if (this.spareBytes + buffer.length > recycledSpareBytesMax) return;
    let list = this.spare.get(buffer.length);
    if (list === undefined) this.spare.set(buffer.length, (list = []));
    list.push(buffer);
    this.spareBytes += buffer.length;
  }
}
