/** Keeps log appends inside the home's free space, so a burst never meets ENOSPC in the log. */
import { assert } from "../lib/assert.ts";
import { recordHeaderBytes } from "../log/format.ts";
import type { LogPosition } from "../log/position.ts";
import { defaultLogWriterLimits } from "../log/writer-limits.ts";
import { defaultTranslogLimits } from "../translog/translog.ts";
import type { SpaceStatus } from "../platform/types.ts";

/**
 * Space a logging primary may take beyond the records it was charged for before the next
 * measurement: one preallocation step of its log writer (zeroes written ahead of the records).
 */
export const logPreallocationReserveBytes = defaultLogWriterLimits.preallocateBytesMax;
/** Kept free besides: gap records, a new logfile's header, position and metadata files. */
export const logSlackBytes = 1024 * 1024;
/** Bytes appended but not durable at most (the translog's overlay bounds them). */
const unsyncedBytesMax = defaultTranslogLimits.overlayBytesMax;
/** Free space is measured again once this fraction of the estimated room has been charged. */
const remeasureFraction = 0.5;

/** What the guard reads of a primary's log. */
export interface GuardedLog {
  readonly logEnd: LogPosition;
  readonly durableEnd: LogPosition;
}

interface Measurement {
  readonly freeBytes: number;
  readonly totalBytes: number;
  /** Bytes appended or admitted, not yet durable, when it was taken (they still allocate). */
  readonly outstandingBytes: number;
  /** `chargedTotalBytes` when it was taken: later charges come off its free space. */
  readonly chargedBaseBytes: number;
  /** Logs that may still allocate a preallocation step against it. */
  readonly active: Set<GuardedLog>;
}

/** The log bytes appended but not yet durable (bounded when the log has rotated since). */
export function unsyncedBytes(log: GuardedLog): number {
  const { logEnd, durableEnd } = log;
  if (logEnd.sequence === durableEnd.sequence) {
    return Math.max(0, logEnd.offsetBytes - durableEnd.offsetBytes);
  }
  return logEnd.offsetBytes + unsyncedBytesMax;
}

/** The record bytes a write of `lengthBytes` appends (its header and payload). */
export function writeChargeBytes(lengthBytes: number): number {
  return recordHeaderBytes + lengthBytes;
}

/**
 * One per home, shared by its primaries. It estimates free space as the last measurement
 * (statfs) minus what was outstanding then, minus every write admitted since, minus one
 * preallocation step per log that may allocate, minus slack. A write that does not fit is
 * measured again first; if it still does not fit, the caller puts its resource into emergency
 * mode before the write (src/retention/emergency.ts) instead of letting the log fail.
 */
export class SpaceGuard {
  private readonly inFlight = new Map<GuardedLog, number>();
  private measurement: Measurement | undefined;
  private chargedTotalBytes = 0;
  private pendingActive: Set<GuardedLog> | undefined;
  private measuring: Promise<SpaceStatus> | undefined;

  constructor(private readonly measure: () => Promise<SpaceStatus>) {}

  /** Starts guarding `log`; the result stops it. */
  register(log: GuardedLog): () => void {
    this.inFlight.set(log, 0);
    return () => void this.inFlight.delete(log);
  }

  /**
   * Whether `bytes` more fit the room last estimated for `log`: charged when true (give it back
   * with `settle` once the append returned). False (nothing charged) also before the first
   * measurement: then ask `admitMeasured`.
   */
  tryAdmit(log: GuardedLog, bytes: number): boolean {
    assert(this.inFlight.has(log), "a guarded log is registered");
    const room = this.roomBytes(log);
    if (room === undefined || bytes > room) return false;
    this.charge(log, bytes);
    if (this.sinceMeasuredBytes() > room * remeasureFraction) void this.measureNow();
    return true;
  }

  /** As tryAdmit, after measuring the free space again. */
  async admitMeasured(log: GuardedLog, bytes: number): Promise<boolean> {
    await this.measureNow();
    const room = this.roomBytes(log);
    if (room === undefined || bytes > room) return false;
    this.charge(log, bytes);
    return true;
  }

  /** The append of `bytes` charged to `log` has returned (its record counts as unsynced now). */
  settle(log: GuardedLog, bytes: number): void {
    const charged = this.inFlight.get(log);
    if (charged === undefined) return;
    assert(charged >= bytes, "settle only what was charged");
    this.inFlight.set(log, charged - bytes);
  }

  /** Whether `logs` logging primaries could log again with `freeBytes` and room to spare. */
  roomToLog(freeBytes: number, logs: number, spareBytes: number): boolean {
    return freeBytes - logs * logPreallocationReserveBytes - logSlackBytes >= spareBytes;
  }

  /** Measures now (one measurement at a time; callers share it). */
  measureNow(): Promise<SpaceStatus> {
    this.measuring ??= this.takeMeasurement().finally(() => { this.measuring = undefined; });
    return this.measuring;
  }

  private async takeMeasurement(): Promise<SpaceStatus> {
    // Snapshot before statfs: what completes meanwhile is counted twice (on the safe side).
    let outstandingBytes = 0;
    const active = new Set<GuardedLog>();
    for (const [log, charged] of this.inFlight) {
      const pending = unsyncedBytes(log) + charged;
      outstandingBytes += pending;
      if (pending > 0) active.add(log);
    }
    const chargedBaseBytes = this.chargedTotalBytes;
    this.pendingActive = active;
    try {
      const space = await this.measure();
      this.measurement = { freeBytes: space.freeBytes, totalBytes: space.totalBytes,
        outstandingBytes, chargedBaseBytes, active };
      return space;
    } finally {
      this.pendingActive = undefined;
    }
  }

  /** Bytes `log` may still append now; undefined before the first measurement. */
  private roomBytes(log: GuardedLog): number | undefined {
    const measured = this.measurement;
    if (!measured) return undefined;
    const activeLogs = measured.active.size + (measured.active.has(log) ? 0 : 1);
    return measured.freeBytes - measured.outstandingBytes - this.sinceMeasuredBytes() -
      activeLogs * logPreallocationReserveBytes - logSlackBytes;
  }

  private sinceMeasuredBytes(): number {
    return this.chargedTotalBytes - (this.measurement?.chargedBaseBytes ?? 0);
  }

  private charge(log: GuardedLog, bytes: number): void {
    this.chargedTotalBytes += bytes;
    this.inFlight.set(log, (this.inFlight.get(log) ?? 0) + bytes);
    this.measurement?.active.add(log);
    this.pendingActive?.add(log);
  }
}
