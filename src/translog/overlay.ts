/** The bounded in-memory overlay: logged writes not yet on the backing disk, in log order. */
import { assert } from "../lib/assert.ts";
import type { LogPosition } from "../log/position.ts";

/** Bytes charged per entry besides its data, so a flood of trims is bounded too. */
export const overlayEntryOverheadBytes = 128;
/** Requests waiting for room in the overlay. */
export const admissionWaitersMax = 65536;
/** The read index files entries in buckets of this many bytes of the device. */
export const indexBucketBytes = 64 * 1024;
/** Entries spanning more buckets than this sit in one list every lookup scans instead. */
export const indexBucketsPerEntryMax = 128;

export type EntryState = "logged" | "writing" | "written";

export interface OverlayEntry {
  /** Record sequence: the overlay is ordered by it. */
  readonly sequence: number;
  readonly offset: number;
  readonly lengthBytes: number;
  /** The written bytes; undefined for trim and write-zeroes (the range reads as zeroes). */
  readonly data: Uint8Array | undefined;
  readonly kind: "write" | "trim" | "write-zeroes";
  /** Where the record ends in the log: the writeback position once it is on the disk. */
  readonly end: LogPosition;
  readonly chargeBytes: number;
  state: EntryState;
}

export function overlaps(entry: OverlayEntry, offset: number, lengthBytes: number): boolean {
  return entry.offset < offset + lengthBytes && offset < entry.offset + entry.lengthBytes;
}

/**
 * Entries enter in log order and leave when their writeback completed. Admission is FIFO: a
 * request that does not fit waits, and every later one waits behind it, so log order stays
 * the order in which requests arrived.
 */
export class Overlay {
  private readonly entries = new Map<number, OverlayEntry>();
  /** Per start offset, the newest entry starting there (for coalescing rewrites). */
  private readonly newestByOffset = new Map<number, OverlayEntry>();
  private readonly buckets = new Map<number, Set<OverlayEntry>>();
  private readonly wide = new Set<OverlayEntry>();
  private chargedBytes = 0;
  private reservedBytes = 0;
  private newestSequence = 0;
  private readonly waiters: Array<{ bytes: number; admit: () => void }> = [];

  constructor(
    readonly bytesMax: number,
    /** Called when an entry left the overlay (its data may be reused by the caller). */
    private readonly onRemoved: (entry: OverlayEntry) => void = () => {},
  ) {
    assert(bytesMax > overlayEntryOverheadBytes, "the overlay holds at least one entry");
  }

  get sizeBytes(): number {
    return this.chargedBytes;
  }
  get entryCount(): number {
    return this.entries.size;
  }
  get waiting(): number {
    return this.waiters.length;
  }

  /** Entries in log order (oldest first). */
  inOrder(): IterableIterator<OverlayEntry> {
    return this.entries.values();
  }

  oldest(): OverlayEntry | undefined {
    return this.entries.values().next().value;
  }

  /**
   * Runs `enter` once `bytes` of room are reserved for it: at once (synchronously) when nobody
   * waits and it fits, else when its turn comes. `enter` runs synchronously at admission, so
   * nothing admitted later can overtake it.
   */
  admit<T>(bytes: number, enter: () => T): T | Promise<T> {
    assert(bytes <= this.bytesMax, "one request fits the overlay");
    if (this.waiters.length === 0 && this.fits(bytes)) {
      this.reservedBytes += bytes;
      return enter();
    }
    assert(this.waiters.length < admissionWaitersMax, "admission waiters within their limit");
    return new Promise<T>((resolve, reject) => {
      this.waiters.push({
        bytes,
        admit: () => {
          try {
            resolve(enter());
          } catch (error) {
            reject(error);
          }
        },
      });
    });
  }

  /** Turns a reservation into an entry. */
  insert(entry: OverlayEntry): void {
    assert(entry.sequence > this.newestSequence, "entries arrive in log order");
    this.newestSequence = entry.sequence;
    assert(this.reservedBytes >= entry.chargeBytes, "an entry was reserved");
    this.reservedBytes -= entry.chargeBytes;
    this.chargedBytes += entry.chargeBytes;
    this.entries.set(entry.sequence, entry);
    this.newestByOffset.set(entry.offset, entry);
    this.indexEntry(entry, true);
    assert(this.chargedBytes + this.reservedBytes <= this.bytesMax, "overlay within its limit");
  }

  /** Returns a reservation that was never inserted (the log append failed). */
  cancel(bytes: number): void {
    this.reservedBytes -= bytes;
    assert(this.reservedBytes >= 0, "reservations never negative");
    this.admitWaiters();
  }

  remove(entry: OverlayEntry): void {
    assert(entry.state === "written", "only written-back entries leave the overlay");
    assert(this.entries.get(entry.sequence) === entry, "the entry is in the overlay");
    this.entries.delete(entry.sequence);
    if (this.newestByOffset.get(entry.offset) === entry) this.newestByOffset.delete(entry.offset);
    this.indexEntry(entry, false);
    this.chargedBytes -= entry.chargeBytes;
    assert(this.chargedBytes >= 0, "overlay bytes never negative");
    this.onRemoved(entry);
    this.admitWaiters();
  }

  /** The newest entry that rewrites exactly the range of `entry` (possibly `entry` itself). */
  newestSameRange(entry: OverlayEntry): OverlayEntry | undefined {
    const newest = this.newestByOffset.get(entry.offset);
    return newest?.lengthBytes === entry.lengthBytes ? newest : undefined;
  }

  /** Entries overlapping a range, oldest first: a read applies them in this order. */
  covering(offset: number, lengthBytes: number): OverlayEntry[] {
    const found = new Set<OverlayEntry>();
    for (const entry of this.wide) if (overlaps(entry, offset, lengthBytes)) found.add(entry);
    const [first, last] = bucketsOf(offset, lengthBytes);
    for (let bucket = first; bucket <= last; bucket++) {
      for (const entry of this.buckets.get(bucket) ?? []) {
        if (overlaps(entry, offset, lengthBytes)) found.add(entry);
      }
    }
    return [...found].sort((left, right) => left.sequence - right.sequence);
  }

  private indexEntry(entry: OverlayEntry, add: boolean): void {
    const [first, last] = bucketsOf(entry.offset, entry.lengthBytes);
    if (last - first + 1 > indexBucketsPerEntryMax) {
      if (add) this.wide.add(entry);
      else this.wide.delete(entry);
      return;
    }
    for (let bucket = first; bucket <= last; bucket++) {
      let members = this.buckets.get(bucket);
      if (add) {
        if (!members) this.buckets.set(bucket, (members = new Set()));
        members.add(entry);
      } else {
        members?.delete(entry);
        if (members?.size === 0) this.buckets.delete(bucket);
      }
    }
  }

  private fits(bytes: number): boolean {
    return this.chargedBytes + this.reservedBytes + bytes <= this.bytesMax;
  }

  private admitWaiters(): void {
    while (this.waiters.length > 0 && this.fits(this.waiters[0]!.bytes)) {
      const waiter = this.waiters.shift()!;
      this.reservedBytes += waiter.bytes;
      waiter.admit();
    }
  }
}

/** First and last index bucket a range touches (an empty range touches its start's bucket). */
function bucketsOf(offset: number, lengthBytes: number): [number, number] {
  const first = Math.floor(offset / indexBucketBytes);
  const last = Math.floor((offset + Math.max(lengthBytes, 1) - 1) / indexBucketBytes);
  return [first, last];
}

/** Lays the overlay entries (oldest first) over bytes read from the disk at `offset`. */
export function applyEntries(target: Uint8Array, offset: number, entries: OverlayEntry[]): void {
  for (const entry of entries) {
    const start = Math.max(offset, entry.offset);
    const end = Math.min(offset + target.length, entry.offset + entry.lengthBytes);
    if (start >= end) continue;
    if (entry.data === undefined) target.fill(0, start - offset, end - offset);
    else target.set(entry.data.subarray(start - entry.offset, end - entry.offset), start - offset);
  }
}
