/** Appends records to a resource's log with group commit: one write and one fdatasync a batch. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { sha256Incremental, type IncrementalDigest } from "../platform/hash.ts";
import type { Clock, IoOperation, Storage, TimerHandle } from "../platform/types.ts";
import {
  encodeLogfileHeader, encodeRecordInto, logfileHeaderBytes, recordHeaderBytes, type Codec,
  type RecordInput,
} from "./format.ts";
import { chainDigest, logfileName, type LogPosition } from "./position.ts";

export interface LogWriterLimits {
  /** A batch is sealed once it holds this many bytes (it always holds at least one record). */
  readonly batchBytesMax: number;
  readonly batchRecordsMax: number;
  /** Longest a non-FUA record waits before its batch is written without being asked. */
  readonly batchDelayMs: number;
  /** A logfile is finished (rotated) before a record would make it longer than this. */
  readonly logfileBytesMax: number;
  /**
   * A logfile older than this is finished at the next append, so a quiet resource's log still
   * comes in pieces that retention can delete (docs/log-lifetime.md). 0 turns it off.
   */
  readonly logfileAgeMsMax: number;
  /** Appended bytes not yet durable; the caller keeps below it (the translog's overlay does). */
  readonly unsyncedBytesMax: number;
  /**
   * Zeroes are written ahead of the records in steps growing from `preallocateBytesMin` to
   * `preallocateBytesMax` (never past `logfileBytesMax`), so a batch's fdatasync overwrites
   * allocated blocks and need not commit a size change. 0 turns it off.
   */
  readonly preallocateBytesMin: number;
  readonly preallocateBytesMax: number;
}

export const defaultLogWriterLimits: LogWriterLimits = {
  batchBytesMax: 4 * 1024 * 1024,
  batchRecordsMax: 4096,
  batchDelayMs: 5,
  logfileBytesMax: 1024 * 1024 * 1024,
  logfileAgeMsMax: 60 * 60 * 1000,
  unsyncedBytesMax: 512 * 1024 * 1024,
  preallocateBytesMin: 1024 * 1024,
  preallocateBytesMax: 64 * 1024 * 1024,
};
/** Zeroes written per I/O while preallocating. */
export const preallocateWriteBytesMax = 1024 * 1024;
const zeroes = new Uint8Array(preallocateWriteBytesMax);
/** Callers waiting for durability at once. */
export const durableWaitersMax = 65536;
/**
 * Batch buffers (`batchBytesMax` each) kept for reuse once their batch is durable; more are
 * allocated while many sealed batches wait, and dropped afterwards.
 */
export const batchBuffersSpareMax = 2;

export interface LogWriterOptions {
  readonly storage: Storage;
  readonly clock: Clock;
  readonly directory: string;
  readonly resource: string;
  readonly origin: string;
  readonly codec?: Codec;
  readonly limits?: Partial<LogWriterLimits>;
}

/** Where a new writer starts: the next logfile of the chain. */
export interface LogStart {
  readonly logfileSequence: number;
  readonly firstRecordSequence: number;
  readonly previousDigest: Uint8Array;
  /** Stamps of new records exceed this (the last stamp in the log). */
  readonly stampFloor: number;
}

export type AppendInput = Omit<RecordInput, "sequence" | "stamp">;

export interface AppendedRecord {
  readonly sequence: number;
  readonly start: LogPosition;
  readonly end: LogPosition;
}

interface OpenLogfile {
  readonly sequence: number;
  readonly path: string;
  readonly digest: IncrementalDigest;
  readonly previousDigest: Uint8Array;
  readonly header: Uint8Array;
  fd: number;
  /** Bytes assigned so far (durable or not). */
  sizeBytes: number;
  /** Bytes on disk: records, then preallocated zeroes. */
  allocatedBytes: number;
  preallocateStepBytes: number;
  recordCount: number;
  /** Clock time the logfile was started (its header's createdMs). */
  readonly createdMs: number;
}

interface Batch {
  readonly file: OpenLogfile;
  readonly startOffset: number;
  /** Records are encoded straight into it (one copy per record); `bytes` of it are used. */
  readonly buffer: Uint8Array;
  bytes: number;
  recordCount: number;
  lastSequence: number;
}

type Work =
  | { readonly kind: "batch"; readonly batch: Batch }
  | { readonly kind: "create"; readonly file: OpenLogfile }
  | { readonly kind: "finish"; readonly file: OpenLogfile };

/**
 * Records get their sequence and file position when appended (synchronously, in call order);
 * they become durable batch by batch. A batch is written only after the previous one is
 * durable, so a crash can damage only the last batch (the reader relies on this).
 */
export class LogWriter {
  readonly limits: LogWriterLimits;
  private file: OpenLogfile;
  private pending: Batch | undefined;
  private readonly work: Work[] = [];
  private running: Promise<void> | undefined;
  private timer: TimerHandle | undefined;
  private waiters: Array<{ sequence: number; resolve: () => void; reject: (e: Error) => void }> =
    [];
  private readonly spareBuffers: Uint8Array[] = [];
  private appendedSequenceValue: number;
  private durableSequenceValue: number;
  private unsyncedBytes = 0;
  private durableEndValue: LogPosition;
  private lastStamp: number;
  private failure: MarsError | undefined;
  private closed = false;
  /** Called after each batch becomes durable (the translog starts writeback from here). */
  onDurable: (sequence: number) => void = () => {};

  private constructor(private readonly options: LogWriterOptions, start: LogStart) {
    this.limits = { ...defaultLogWriterLimits, ...options.limits };
    assert(this.limits.batchBytesMax <= this.limits.unsyncedBytesMax, "batch fits unsynced");
    this.appendedSequenceValue = start.firstRecordSequence - 1;
    this.durableSequenceValue = start.firstRecordSequence - 1;
    this.lastStamp = start.stampFloor;
    this.file = this.newLogfile(start.logfileSequence, start.previousDigest, start);
    this.durableEndValue = { sequence: start.logfileSequence, offsetBytes: logfileHeaderBytes };
  }

  /** Creates the first logfile durably (header, fdatasync, directory fsync), then returns. */
  static async start(options: LogWriterOptions, start: LogStart): Promise<LogWriter> {
    const writer = new LogWriter(options, start);
    await writer.createLogfile(writer.file);
    return writer;
  }

  get appendedSequence(): number {
    return this.appendedSequenceValue;
  }
  get durableSequence(): number {
    return this.durableSequenceValue;
  }
  /** The end of everything appended: where the next record will start. */
  get endPosition(): LogPosition {
    return { sequence: this.file.sequence, offsetBytes: this.file.sizeBytes };
  }
  /**
   * The end of what is durable: bytes before it will survive a crash. Only these may be shipped
   * to other hosts or written back (bytes after it may still vanish in a torn tail).
   */
  get durableEnd(): LogPosition {
    return this.durableEndValue;
  }
  get currentLogfileSequence(): number {
    return this.file.sequence;
  }

  /** Whether `bytes` more may be appended without exceeding `unsyncedBytesMax`. */
  hasRoom(bytes: number): boolean {
    return this.unsyncedBytes + bytes <= this.limits.unsyncedBytesMax;
  }

  /** Appends: encodes the record into the open batch; durable later (see waitDurable). */
  append(input: AppendInput): AppendedRecord {
    if (this.failure) throw this.failure;
    assert(!this.closed, "append on an open writer");
    const sequence = this.appendedSequenceValue + 1;
    const stamp = this.nextStamp();
    const recordBytes = recordHeaderBytes + (input.payload?.length ?? 0);
    if (this.file.recordCount > 0 &&
        (this.file.sizeBytes + recordBytes > this.limits.logfileBytesMax || this.tooOld())) {
      this.rotate();
    }
    const batch = this.openBatch(recordBytes);
    const file = this.file;
    const start = { sequence: file.sequence, offsetBytes: file.sizeBytes };
    const encodedBytes = encodeRecordInto({ ...input, sequence, stamp }, {
      logfileSequence: file.sequence, fileOffset: file.sizeBytes,
      batchStartOffset: batch.startOffset,
    }, this.options.codec ?? "none", batch.buffer, batch.bytes);
    assert(encodedBytes <= recordBytes, "a record is never longer than header and payload");
    file.digest.update(batch.buffer.subarray(batch.bytes, batch.bytes + encodedBytes));
    batch.bytes += encodedBytes;
    batch.recordCount++;
    batch.lastSequence = sequence;
    file.sizeBytes += encodedBytes;
    file.recordCount++;
    this.unsyncedBytes += encodedBytes;
    assert(this.unsyncedBytes <= this.limits.unsyncedBytesMax, "unsynced log within its limit");
    this.appendedSequenceValue = sequence;
    this.schedule();
    return { sequence, start, end: { sequence: file.sequence, offsetBytes: file.sizeBytes } };
  }

  /** Resolves once record `sequence` (and so every earlier one) is durable in the log. */
  waitDurable(sequence: number): Promise<void> {
    assert(sequence <= this.appendedSequenceValue, "wait only for appended records");
    if (this.failure) return Promise.reject(this.failure);
    if (sequence <= this.durableSequenceValue) return Promise.resolve();
    assert(this.waiters.length < durableWaitersMax, "durability waiters within their limit");
    const promise = new Promise<void>((resolve, reject) => {
      this.waiters.push({ sequence, resolve, reject });
    });
    // Group commit: while a batch is being committed, the open one keeps filling; the commit
    // loop seals it as soon as the disk is free (drainWork), so waiters share one fdatasync.
    const pending = this.pending;
    if (pending && sequence > pending.lastSequence - pending.recordCount &&
        this.running === undefined) {
      this.sealPending();
    }
    void this.pump();
    return promise;
  }

  /**
   * Finishes the current logfile now (when it holds a record) and continues in the next one:
   * emergency mode ends a logfile with its gap record, so the logfile can be deleted.
   */
  rotateNow(): void {
    if (this.failure) throw this.failure;
    assert(!this.closed, "rotate an open writer");
    if (this.file.recordCount > 0) this.rotate();
    this.schedule();
  }

  /** Makes every record appended so far durable. */
  flush(): Promise<void> {
    return this.waitDurable(this.appendedSequenceValue);
  }

  /** Flushes, closes the logfile and returns where the log ends and its chain state. */
  async close(): Promise<{ end: LogPosition; lastStamp: number }> {
    await this.flush();
    this.closed = true;
    this.timer?.cancel();
    this.timer = undefined;
    this.work.push({ kind: "finish", file: this.file });
    await this.pump();
    if (this.failure) throw this.failure;
    return { end: this.endPosition, lastStamp: this.lastStamp };
  }

  // --- internal ---

  private nextStamp(): number {
    const microseconds = Math.floor(this.options.clock.nowMs() * 1000);
    this.lastStamp = Math.max(microseconds, this.lastStamp + 1);
    return this.lastStamp;
  }

  /** Whether the open logfile has outlived `logfileAgeMsMax` (rotation by age). */
  private tooOld(): boolean {
    const ageMsMax = this.limits.logfileAgeMsMax;
    return ageMsMax > 0 && this.options.clock.nowMs() - this.file.createdMs >= ageMsMax;
  }

  private newLogfile(sequence: number, previousDigest: Uint8Array, start: LogStart) {
    const name = logfileName(sequence, this.options.origin);
    const createdMs = Math.floor(this.options.clock.nowMs());
    const header = encodeLogfileHeader({
      formatVersion: 1, sequence, firstRecordSequence: start.firstRecordSequence,
      createdMs, resource: this.options.resource,
      origin: this.options.origin, previousDigest,
    });
    const digest = sha256Incremental();
    digest.update(header);
    return {
      sequence, path: `${this.options.directory}/${name}`, digest, previousDigest, header,
      fd: -1, sizeBytes: logfileHeaderBytes, allocatedBytes: logfileHeaderBytes,
      preallocateStepBytes: this.limits.preallocateBytesMin, recordCount: 0, createdMs,
    };
  }

  /** Finishes the current logfile (its chain digest is final now) and opens the next one. */
  private rotate(): void {
    this.sealPending();
    const finished = this.file;
    const previousDigest = chainDigest({
      sequence: finished.sequence, origin: this.options.origin,
      lengthBytes: finished.sizeBytes, contentDigest: finished.digest.digest(),
      previousDigest: finished.previousDigest,
    });
    this.file = this.newLogfile(finished.sequence + 1, previousDigest, {
      logfileSequence: finished.sequence + 1, previousDigest,
      firstRecordSequence: this.appendedSequenceValue + 1, stampFloor: this.lastStamp,
    });
    this.work.push({ kind: "finish", file: finished }, { kind: "create", file: this.file });
  }

  private openBatch(recordBytes: number): Batch {
    const full = this.pending !== undefined && (
      this.pending.bytes + recordBytes > this.limits.batchBytesMax ||
      this.pending.recordCount >= this.limits.batchRecordsMax);
    if (full) this.sealPending();
    this.pending ??= {
      file: this.file, startOffset: this.file.sizeBytes, buffer: this.takeBuffer(recordBytes),
      bytes: 0, recordCount: 0, lastSequence: 0,
    };
    assert(this.pending.file === this.file, "a batch belongs to one logfile");
    assert(this.pending.bytes + recordBytes <= this.pending.buffer.length, "the record fits");
    return this.pending;
  }

  /** A batch buffer: a spare one, a new one, or (for a record above the batch size) its own. */
  private takeBuffer(recordBytes: number): Uint8Array {
    const standardBytes = this.limits.batchBytesMax;
    if (recordBytes > standardBytes) return new Uint8Array(recordBytes);
    return this.spareBuffers.pop() ?? new Uint8Array(standardBytes);
  }

  /** A durable batch's buffer may be reused: nothing refers to it any more. */
  private returnBuffer(buffer: Uint8Array): void {
    if (buffer.length !== this.limits.batchBytesMax) return;
    if (this.spareBuffers.length < batchBuffersSpareMax) this.spareBuffers.push(buffer);
  }

  private sealPending(): void {
    if (this.pending === undefined) return;
    this.work.push({ kind: "batch", batch: this.pending });
    this.pending = undefined;
  }

  /** Writes now when a batch is sealed or someone waits; else within `batchDelayMs`. */
  private schedule(): void {
    if (this.work.length > 0) {
      void this.pump();
      return;
    }
    if (this.timer === undefined) this.armTimer();
  }

  private armTimer(): void {
    if (this.closed || this.failure) return;
    this.timer = this.options.clock.setTimer(this.limits.batchDelayMs, () => {
      this.timer = undefined;
      this.sealPending();
      void this.pump();
    });
  }

  /** Commits: one work item at a time, in order; the only place that touches the disk. */
  private pump(): Promise<void> {
    this.running ??= this.drainWork().finally(() => {
      this.running = undefined;
      if (this.waiters.length > 0 && !this.failure) this.sealPending();
      if (this.work.length > 0 && !this.failure) void this.pump();
      else if (this.pending !== undefined && this.timer === undefined) this.armTimer();
    });
    return this.running;
  }

  private async drainWork(): Promise<void> {
    try {
      for (let item = this.work.shift(); item !== undefined; item = this.work.shift()) {
        if (this.failure) break;
        await this.perform(item);
        if (this.work.length === 0 && this.waiters.length > 0) this.sealPending();
      }
    } catch (error) {
      this.fail(error);
    }
  }

  private async perform(item: Work): Promise<void> {
    if (item.kind === "create") return this.createLogfile(item.file);
    if (item.kind === "finish") return this.finishLogfile(item.file);
    await this.commitBatch(item.batch);
  }

  /** Cuts the preallocated zeroes off a finished logfile, so every copy has the same bytes. */
  private async finishLogfile(file: OpenLogfile): Promise<void> {
    if (file.fd < 0) return;
    const { files } = this.options.storage;
    if (file.allocatedBytes > file.sizeBytes) {
      await files.truncate(file.fd, file.sizeBytes);
      await this.submit(file, [{ kind: "fsync", fd: file.fd, dataOnly: false }]);
      file.allocatedBytes = file.sizeBytes;
    }
    await files.close(file.fd);
    file.fd = -1;
  }

  /** Zero-fill writes that make room for bytes up to `end` (empty when there is room). */
  private preallocate(file: OpenLogfile, end: number): IoOperation[] {
    if (this.limits.preallocateBytesMax === 0 || end <= file.allocatedBytes) return [];
    const target = Math.max(end, Math.min(file.allocatedBytes + file.preallocateStepBytes,
      this.limits.logfileBytesMax));
    const operations: IoOperation[] = [];
    for (let offset = file.allocatedBytes; offset < target; offset += zeroes.length) {
      const length = Math.min(zeroes.length, target - offset);
      operations.push({ kind: "write", fd: file.fd, offset, buffer: zeroes.subarray(0, length) });
    }
    file.allocatedBytes = target;
    file.preallocateStepBytes = Math.min(file.preallocateStepBytes * 2,
      this.limits.preallocateBytesMax);
    return operations;
  }

  private async createLogfile(file: OpenLogfile): Promise<void> {
    const { files } = this.options.storage;
    file.fd = await files.open(file.path, { create: true, exclusive: true });
    await this.submit(file, [
      // The header alone first: a crash during creation leaves at most 256 bytes to remove.
      { kind: "write", fd: file.fd, offset: 0, buffer: file.header },
      { kind: "fsync", fd: file.fd, dataOnly: false },
    ]);
    await files.syncDirectory(this.options.directory);
  }

  private async commitBatch(batch: Batch): Promise<void> {
    assert(batch.file.fd >= 0, "a batch goes to an open logfile");
    assert(batch.lastSequence === this.durableSequenceValue + batch.recordCount,
      "batches commit in sequence order");
    const buffer = batch.buffer.subarray(0, batch.bytes);
    await this.submit(batch.file, [
      ...this.preallocate(batch.file, batch.startOffset + batch.bytes),
      { kind: "write", fd: batch.file.fd, offset: batch.startOffset, buffer },
      { kind: "fsync", fd: batch.file.fd, dataOnly: true },
    ]);
    this.unsyncedBytes -= batch.bytes;
    assert(this.unsyncedBytes >= 0, "unsynced bytes never negative");
    this.durableSequenceValue = batch.lastSequence;
    this.durableEndValue = {
      sequence: batch.file.sequence, offsetBytes: batch.startOffset + batch.bytes,
    };
    this.returnBuffer(batch.buffer);
    this.releaseWaiters();
    this.onDurable(batch.lastSequence);
  }

  private async submit(file: OpenLogfile, operations: IoOperation[]): Promise<void> {
    const results = await this.options.storage.io.submit(operations, { ordered: true });
    for (const result of results) {
      if (!result.ok) {
        const code = result.errno === "ENOSPC" ? "no-space" : "io";
        throw new MarsError(code, `${file.path}: log write failed: ${result.message}`, {
          details: { file: file.path, errno: result.errno },
        });
      }
    }
  }

  private releaseWaiters(): void {
    const durable = this.durableSequenceValue;
    const ready = this.waiters.filter((waiter) => waiter.sequence <= durable);
    this.waiters = this.waiters.filter((waiter) => waiter.sequence > durable);
    for (const waiter of ready) waiter.resolve();
  }

  /** A failed log write stops the writer: nothing later may become durable out of order. */
  private fail(error: unknown): void {
    this.failure = error instanceof MarsError
      ? error
      : new MarsError("io", `log writer failed: ${String(error)}`, { cause: error });
    for (const waiter of this.waiters) waiter.reject(this.failure);
    this.waiters = [];
    this.timer?.cancel();
  }
}
