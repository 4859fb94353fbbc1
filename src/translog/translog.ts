/** The translog: a BlockDevice that logs every write before it reaches the backing disk. */
import { assert } from "../lib/assert.ts";
import type { Clock, Storage, TimerHandle } from "../platform/types.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags, type ZeroFlags,
} from "../block/types.ts";
import {
  logfileHeaderBytes, recordHeaderBytes, recordPayloadBytesMax, recordRangeBytesMax,
  type Codec,
} from "../log/format.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";
import { defaultLogWriterLimits, LogWriter, type LogWriterLimits } from "../log/writer.ts";
import {
  applyEntries, Overlay, overlayEntryOverheadBytes, type OverlayEntry,
} from "./overlay.ts";
import { PayloadRecycler, recycledPayloadBytesMin } from "./payload-recycler.ts";
import { PositionStore } from "./position-store.ts";
import { recoverLog, type RecoveryResult } from "./recovery.ts";
import { resolveContinuedFrom } from "./continued-from.ts";
import { Writeback } from "./writeback.ts";

export interface TranslogLimits {
  /** Bytes of logged data held in memory before writes wait (backpressure). */
  readonly overlayBytesMax: number;
  /** How long a writeback advance may stay unpersisted (it is persisted lazily). */
  readonly positionPersistDelayMs: number;
  /** Overlay copies of payloads at least this large are reused (payload-recycler.ts). */
  readonly payloadReuseBytesMin: number;
  readonly writer: Partial<LogWriterLimits>;
}

export const defaultTranslogLimits: TranslogLimits = {
  overlayBytesMax: 64 * 1024 * 1024,
  positionPersistDelayMs: 1000,
  payloadReuseBytesMin: recycledPayloadBytesMin,
  writer: {},
};

export interface TranslogOptions {
  readonly storage: Storage;
  readonly clock: Clock;
  /** The resource's log directory (logfiles and the writeback position live here). */
  readonly directory: string;
  readonly resource: string;
  readonly host: string;
  /** The backing disk; the translog owns it from now on and closes it. */
  readonly backing: BlockDevice;
  readonly codec?: Codec;
  readonly limits?: Partial<TranslogLimits>;
}

export interface Translog extends BlockDevice {
  readonly recovery: RecoveryResult;
  /**
   * The end of the log this host's own logfiles continue, durable across restarts (the split
   * point of its history; src/translog/continued-from.ts). Undefined: a new history.
   */
  readonly continuedFrom: LogPosition | undefined;
  /** Every record before this is on the backing disk (durable after the next persist). */
  readonly writebackPosition: LogPosition;
  /**
   * The writeback position as last persisted (the backing disk flushed first): recovery after
   * a crash starts here, so every logfile from here on must still exist.
   */
  readonly persistedPosition: LogPosition;
  /** The end of the log: where the next record goes. */
  readonly logEnd: LogPosition;
  /** The end of what is durable in the log: the most a peer may fetch. */
  readonly durableEnd: LogPosition;
  /** Persists the writeback position now (after flushing the backing disk). */
  persistPosition(): Promise<void>;
  /** Counters for status output and tests. */
  statistics(): TranslogStatistics;
  /**
   * Emergency mode (docs/log-lifetime.md): appends a durable `gap` record, which marks the
   * history from here on as missing (replicas stop before it).
   */
  markGap(): Promise<void>;
  /** Resolves once every logged write is durable, on the backing disk, and the position saved. */
  drain(): Promise<void>;
}

export interface TranslogStatistics {
  readonly overlayBytes: number;
  readonly overlayEntries: number;
  /** Requests waiting for room in the overlay (backpressure). */
  readonly waitingRequests: number;
  readonly appendedSequence: number;
  readonly durableSequence: number;
  /** Entries written to the backing disk, and entries skipped as rewritten by a newer one. */
  readonly writtenBack: number;
  readonly superseded: number;
}

/** Recovers the log onto the backing disk, then returns the device, ready to serve. */
export async function openTranslog(options: TranslogOptions): Promise<Translog> {
  const limits = { ...defaultTranslogLimits, ...options.limits };
  const { storage, directory } = options;
  await storage.files.makeDirectory(directory);
  const store = await PositionStore.open(storage, directory);
  const recovery = await recoverLog(storage, directory, options.backing, store.current);
  if (recovery.position && !samePosition(recovery.position, store.current)) {
    await store.write(recovery.position);
  }
  const continuedFrom = await resolveContinuedFrom(storage, directory, options.host, recovery);
  const writer = await LogWriter.start({
    storage, clock: options.clock, directory, resource: options.resource, origin: options.host,
    ...(options.codec ? { codec: options.codec } : {}),
    limits: {
      ...limits.writer,
      // Every unsynced record has an overlay entry charged at least its size.
      unsyncedBytesMax: Math.max(limits.overlayBytesMax, limits.writer.unsyncedBytesMax ?? 0,
        limits.writer.batchBytesMax ?? defaultLogWriterLimits.batchBytesMax),
    },
  }, recovery.start);
  const start = { sequence: recovery.start.logfileSequence, offsetBytes: logfileHeaderBytes };
  if (!recovery.position) await store.write(start);
  return new TranslogDevice(options, limits, writer, store, recovery, recovery.position ?? start,
    continuedFrom);
}

function samePosition(left: LogPosition, right: LogPosition | undefined): boolean {
  return right !== undefined && comparePositions(left, right) === 0;
}

function capabilitiesOver(backing: BlockDevice, overlayBytesMax: number): BlockCapabilities {
  const minimumBytes = backing.capabilities.blockSizes.minimumBytes;
  const limit = Math.min(backing.capabilities.blockSizes.maximumBytes, recordPayloadBytesMax,
    Math.floor((overlayBytesMax - overlayEntryOverheadBytes) / 2));
  const maximumBytes = Math.floor(limit / minimumBytes) * minimumBytes;
  assert(maximumBytes >= minimumBytes, "the overlay holds at least one block");
  return {
    writable: true, flush: true, fua: "native", trim: true, writeZeroes: true,
    multiConnection: true,
    blockSizes: {
      minimumBytes, preferredBytes: Math.max(minimumBytes, 4096), maximumBytes,
    },
  };
}

class TranslogDevice implements Translog {
  readonly capabilities: BlockCapabilities;
  private readonly overlay: Overlay;
  private readonly payloads: PayloadRecycler;
  private readonly writeback: Writeback;
  private persistTimer: TimerHandle | undefined;
  private persisting: Promise<void> = Promise.resolve();
  private failure: BlockError | undefined;
  private closed = false;

  constructor(
    private readonly options: TranslogOptions,
    private readonly limits: TranslogLimits,
    private readonly writer: LogWriter,
    private readonly store: PositionStore,
    readonly recovery: RecoveryResult,
    start: LogPosition,
    readonly continuedFrom: LogPosition | undefined,
  ) {
    this.capabilities = capabilitiesOver(options.backing, limits.overlayBytesMax);
    this.payloads = new PayloadRecycler(limits.payloadReuseBytesMin);
    this.overlay = new Overlay(limits.overlayBytesMax, (entry) => {
      if (entry.data !== undefined) this.payloads.release(entry.data);
    });
    this.writeback = new Writeback(this.overlay, options.backing,
      () => this.writer.durableSequence, () => this.schedulePersist(),
      (error) => this.fail("writeback to the backing disk failed", error), start);
    // Phase 4 (writeback.ts) starts whenever a batch became durable.
    writer.onDurable = () => this.writeback.kick();
  }

  /** The backing disk's size, read at every use: a disk that grew (mars resize) is covered. */
  get sizeBytes(): number {
    return this.options.backing.sizeBytes;
  }
  get writebackPosition(): LogPosition {
    return this.writeback.writtenThrough;
  }
  get persistedPosition(): LogPosition {
    const persisted = this.store.current;
    assert(persisted !== undefined, "a position is persisted before the translog serves");
    return persisted;
  }
  get logEnd(): LogPosition {
    return this.writer.endPosition;
  }
  get durableEnd(): LogPosition {
    return this.writer.durableEnd;
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    this.checkUsable();
    // The entries' data must not be reused until they are applied (PayloadRecycler).
    const ticket = this.payloads.readStarted();
    try {
      const entries = this.overlay.covering(offset, target.length);
      await this.options.backing.read(offset, target);
      applyEntries(target, offset, entries);
    } finally {
      this.payloads.readEnded(ticket);
    }
  }

  async write(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    this.checkUsable();
    // Kept as it is under the caller's lease (NBD's pooled buffers), else copied.
    const kept = this.payloads.keep(data, flags.lease);
    let entry: OverlayEntry;
    try {
      entry = await this.phase1Admit("write", offset, kept.length, kept);
    } catch (error) {
      this.payloads.release(kept); // it never entered the overlay
      throw error;
    }
    await this.phase3Reply(entry, flags.fua);
  }

  async trim(offset: number, lengthBytes: number, flags: WriteFlags): Promise<void> {
    await this.logRange("trim", offset, lengthBytes, flags);
  }

  async writeZeroes(offset: number, lengthBytes: number, flags: ZeroFlags): Promise<void> {
    await this.logRange("write-zeroes", offset, lengthBytes, flags);
  }

  /** Replies once every write acknowledged before it is durable in the log. */
  async flush(): Promise<void> {
    this.checkUsable();
    await this.durable(this.writer.appendedSequence);
  }

  statistics(): TranslogStatistics {
    return {
      overlayBytes: this.overlay.sizeBytes, overlayEntries: this.overlay.entryCount,
      waitingRequests: this.overlay.waiting, appendedSequence: this.writer.appendedSequence,
      durableSequence: this.writer.durableSequence, writtenBack: this.writeback.writtenCount,
      superseded: this.writeback.supersededCount,
    };
  }

  async markGap(): Promise<void> {
    this.checkUsable();
    let appended;
    try {
      appended = this.writer.append({ kind: "gap", deviceOffset: 0, lengthBytes: 0 });
      // The gap ends its logfile: everything before it may go while the emergency lasts.
      this.writer.rotateNow();
    } catch (error) {
      if (error instanceof BlockError) throw error;
      throw this.fail("log append failed", error);
    }
    await this.durable(appended.sequence);
  }

  async drain(): Promise<void> {
    this.checkUsable();
    await this.durable(this.writer.appendedSequence);
    await this.writeback.drained();
    await this.persistPosition();
  }

  async persistPosition(): Promise<void> {
    this.persisting = this.persisting.then(() => this.persistNow());
    await this.persisting;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.persistTimer?.cancel();
    if (!this.failure) {
      await this.durable(this.writer.appendedSequence);
      await this.writeback.drained();
      await this.persistPosition();
      await this.writer.close();
    }
    await this.store.close();
    await this.options.backing.close();
    if (this.failure) throw this.failure;
  }

  // --- phases ---

  /**
   * phase1Admit: waits for room in the overlay (FIFO), then — synchronously, so nothing
   * overtakes it — phase2Log appends the record and puts the entry in the overlay.
   */
  private async phase1Admit(
    kind: OverlayEntry["kind"], offset: number, lengthBytes: number, data?: Uint8Array,
  ): Promise<OverlayEntry> {
    const chargeBytes = (data?.length ?? 0) + overlayEntryOverheadBytes;
    const admitted = this.overlay.admit(chargeBytes,
      () => this.phase2Log(kind, offset, lengthBytes, chargeBytes, data));
    if (admitted instanceof Promise) {
      // Backpressure: make the log durable now so writeback can free room.
      this.writer.flush().catch(() => {});
    }
    return admitted;
  }

  private phase2Log(
    kind: OverlayEntry["kind"], offset: number, lengthBytes: number, chargeBytes: number,
    data: Uint8Array | undefined,
  ): OverlayEntry {
    assert(recordHeaderBytes <= overlayEntryOverheadBytes, "the charge covers the record header");
    let appended;
    try {
      this.checkUsable(); // it may have closed or failed while this request waited for room
      appended = this.writer.append({
        kind, deviceOffset: offset, lengthBytes, ...(data ? { payload: data } : {}),
      });
    } catch (error) {
      this.overlay.cancel(chargeBytes);
      if (error instanceof BlockError) throw error;
      throw this.fail("log append failed", error);
    }
    const entry: OverlayEntry = {
      sequence: appended.sequence, offset, lengthBytes, data, kind, end: appended.end,
      chargeBytes, state: "logged",
    };
    this.overlay.insert(entry);
    this.writeback.enqueue(entry);
    return entry;
  }

  /** phase3Reply: a plain write is acknowledged once logged; FUA once its batch is durable. */
  private async phase3Reply(entry: OverlayEntry, fua: boolean): Promise<void> {
    if (fua) await this.durable(entry.sequence);
  }

  private async logRange(
    kind: "trim" | "write-zeroes", offset: number, lengthBytes: number, flags: WriteFlags,
  ): Promise<void> {
    this.checkUsable();
    let last: OverlayEntry | undefined;
    for (let done = 0; done < lengthBytes || last === undefined; done += recordRangeBytesMax) {
      const piece = Math.min(recordRangeBytesMax, lengthBytes - done);
      last = await this.phase1Admit(kind, offset + done, piece);
    }
    await this.phase3Reply(last, flags.fua);
  }

  // --- helpers ---

  private async durable(sequence: number): Promise<void> {
    try {
      await this.writer.waitDurable(sequence);
    } catch (error) {
      throw this.fail("log write failed", error);
    }
  }

  private schedulePersist(): void {
    if (this.persistTimer !== undefined || this.closed) return;
    this.persistTimer = this.options.clock.setTimer(this.limits.positionPersistDelayMs, () => {
      this.persistTimer = undefined;
      this.persistPosition().catch((error) => this.fail("persisting the position failed", error));
    });
  }

  /** Flushes the backing disk first: the position may only name what is durable there. */
  private async persistNow(): Promise<void> {
    const target = this.writeback.writtenThrough;
    if (samePosition(target, this.store.current)) return;
    await this.options.backing.flush();
    await this.store.write(target);
  }

  private checkUsable(): void {
    if (this.failure) throw this.failure;
    if (this.closed) throw new BlockError("ESHUTDOWN", "translog is closed");
  }

  /** The device stops for good: every later request fails (ENOSPC when the store is full). */
  private fail(what: string, error: unknown): BlockError {
    const full = (error as { code?: unknown } | undefined)?.code === "no-space" ||
      (error as { errno?: unknown } | undefined)?.errno === "ENOSPC";
    this.failure ??= new BlockError(full ? "ENOSPC" : "EIO", `${what}: ${String(error)}`,
      { cause: error });
    return this.failure;
  }
}
