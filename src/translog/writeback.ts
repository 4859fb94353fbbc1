/** phase4Writeback: overlay entries to the backing disk, in parallel, per-block in log order. */
import { assert } from "../lib/assert.ts";
import type { BlockDevice } from "../block/types.ts";
import type { LogPosition } from "../log/position.ts";
import { overlaps, type Overlay, type OverlayEntry } from "./overlay.ts";

/** Backing-disk writes in flight at once. */
export const writebackInFlightMax = 64;
/** Entries at least this large are written back in the background (WriteFlags.background). */
export const backgroundWritebackBytesMin = 64 * 1024;
/** Overlay entries examined per scheduling pass. */
export const writebackScanEntriesMax = 4096;

/**
 * Rules (docs/log-format.md, DESIGN §5): an entry goes to the disk only once its record is
 * durable in the log; an entry waits while an older overlapping entry is not yet written, so
 * overlapping records reach the disk in log order. Entries leave the overlay from the front
 * once written, and `writtenThrough` (the writeback position) advances with them: every record
 * before it is on the disk (durable after the next backing flush).
 */
export class Writeback {
  private inFlight = 0;
  /** Entries logged but not yet issued, in log order (a Set keeps insertion order). */
  private readonly queued = new Set<OverlayEntry>();
  /** Entries being written to the disk. */
  private readonly writing = new Set<OverlayEntry>();
  private failure: Error | undefined;
  private idleWaiters: Array<() => void> = [];
  writtenThroughValue: LogPosition;
  /** Entries written to the disk, and entries skipped because a newer one covers them. */
  writtenCount = 0;
  supersededCount = 0;

  constructor(
    private readonly overlay: Overlay,
    private readonly backing: BlockDevice,
    private readonly durableSequence: () => number,
    private readonly onProgress: () => void,
    private readonly onFailure: (error: Error) => void,
    start: LogPosition,
  ) {
    this.writtenThroughValue = start;
  }

  get writtenThrough(): LogPosition {
    return this.writtenThroughValue;
  }

  /** A logged entry entered the overlay (in log order); it goes once durable. */
  enqueue(entry: OverlayEntry): void {
    assert(entry.state === "logged", "a new entry is logged");
    this.queued.add(entry);
  }

  /**
   * Issues every entry that may go to the disk now. Only not-yet-issued entries are scanned
   * (the written ones waiting for an older write to finish are not): an entry waits while it
   * overlaps one being written or an older one still queued.
   */
  kick(): void {
    if (this.failure) return;
    const durable = this.durableSequence();
    /** Queued entries passed over in this scan: later overlapping ones wait behind them. */
    const passed: OverlayEntry[] = [];
    let scanned = 0;
    let superseded = false;
    for (const entry of this.queued) {
      if (this.inFlight >= writebackInFlightMax || scanned++ >= writebackScanEntriesMax) break;
      if (entry.sequence > durable) break; // durability is a prefix of the log
      const newest = this.overlay.newestSameRange(entry);
      if (newest !== undefined && newest !== entry && newest.sequence <= durable) {
        // Coalescing: a newer durable record rewrites exactly this range, so this one never
        // needs to reach the disk; replay from any later position restores the newer one.
        this.queued.delete(entry);
        entry.state = "written";
        this.supersededCount++;
        superseded = true;
        continue;
      }
      if (this.overlapsAny(this.writing, entry) || this.overlapsAny(passed, entry)) {
        passed.push(entry);
        continue;
      }
      this.queued.delete(entry);
      this.phase4Writeback(entry);
    }
    if (superseded) this.advance();
  }

  private overlapsAny(others: Iterable<OverlayEntry>, entry: OverlayEntry): boolean {
    for (const other of others) {
      if (overlaps(other, entry.offset, entry.lengthBytes)) return true;
    }
    return false;
  }

  /** Resolves once the overlay is empty (everything written back) or writeback failed. */
  drained(): Promise<void> {
    if (this.overlay.entryCount === 0 || this.failure) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** phase4Writeback: one entry to the disk (durable in the log, nothing older overlaps). */
  private phase4Writeback(entry: OverlayEntry): void {
    assert(entry.state === "logged", "an entry is written back once");
    assert(entry.sequence <= this.durableSequence(), "only records durable in the log");
    entry.state = "writing";
    this.writing.add(entry);
    this.inFlight++;
    assert(this.inFlight <= writebackInFlightMax, "writeback in flight within its limit");
    this.write(entry).then(() => this.phase4WritebackDone(entry),
      (error: Error) => this.failed(error));
  }

  private write(entry: OverlayEntry): Promise<void> {
    if (entry.kind === "write") {
      assert(entry.data !== undefined, "a write entry holds its data");
      // Large copies into the page cache run beside the event loop; small ones stay inline
      // (io-wq runs one file's buffered writes one at a time: 4 KiB writes queued there).
      const background = entry.data.length >= backgroundWritebackBytesMin;
      return this.backing.write(entry.offset, entry.data, { fua: false, background });
    }
    if (entry.kind === "trim" && this.backing.capabilities.trim) {
      return this.backing.trim(entry.offset, entry.lengthBytes, { fua: false });
    }
    return this.backing.writeZeroes(entry.offset, entry.lengthBytes, { fua: false, noHole: false });
  }

  /** phase4WritebackDone: the entry is on the disk; the position may move past it. */
  private phase4WritebackDone(entry: OverlayEntry): void {
    this.inFlight--;
    this.writing.delete(entry);
    entry.state = "written";
    this.writtenCount++;
    this.advance();
    this.kick();
  }

  /** Removes written entries from the front of the overlay, moving the position with them. */
  private advance(): void {
    let moved = false;
    for (let oldest = this.overlay.oldest(); oldest?.state === "written";
      oldest = this.overlay.oldest()) {
      this.writtenThroughValue = oldest.end;
      this.overlay.remove(oldest);
      moved = true;
    }
    if (this.overlay.entryCount === 0) this.releaseIdle();
    if (moved) this.onProgress();
  }

  private failed(error: Error): void {
    this.inFlight--;
    this.failure = error;
    this.releaseIdle();
    this.onFailure(error);
  }

  private releaseIdle(): void {
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }
}
