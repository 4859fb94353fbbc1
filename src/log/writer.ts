/** Appends records to a resource's log with group commit: one write and one fdatasync a batch. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { Clock, IoOperation, Storage, TimerHandle } from "../platform/types.ts";
import { ContentDigest } from "./content-digest.ts";
import {
  encodeLogfileHeader, encodeRecordInto, logFormatVersion, logfileHeaderBytes, recordHeaderBytes,
  type Codec, type RecordInput,
} from "./format.ts";
import { chainDigest, logfileName, type LogPosition } from "./position.ts";
import type { Batch, OpenLogfile, Work } from "./writer-state.ts";
import { BatchBuffers, directBlockBytes, roundUp } from "./batch-buffers.ts";
import {
  batchEagerBytesMin, defaultLogWriterLimits, preallocateSkipBatchBytesMin, type LogWriterLimits,
} from "./writer-limits.ts";

export { defaultLogWriterLimits, type LogWriterLimits } from "./writer-limits.ts";
/** Callers waiting for durability at once. */
export const durableWaitersMax = 65536;

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
  private readonly buffers: BatchBuffers;
  /** Batches go in whole blocks of this size: 1, or directBlockBytes with O_DIRECT logfiles. */
  private blockBytes = 1;
  /** Whether logfiles open with O_DIRECT (decided by the first one). */
  private directChosen: boolean | undefined;
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
    this.buffers = new BatchBuffers(options.storage.io, this.limits.batchBytesMax);
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
    if (writer.directChosen === true) writer.blockBytes = directBlockBytes;
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
    const at = batch.headBytes + batch.bytes;
    const encodedBytes = encodeRecordInto({ ...input, sequence, stamp }, {
      logfileSequence: file.sequence, fileOffset: file.sizeBytes,
      batchStartOffset: batch.startOffset,
    }, this.options.codec ?? "none", batch.buffer, at);
    assert(encodedBytes <= recordBytes, "a record is never longer than header and payload");
    file.digest.recordHeader(batch.buffer.subarray(at, at + recordHeaderBytes));
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
    // Its aligned buffers serve the next writer of the process.
    this.buffers.close();
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
      formatVersion: logFormatVersion, sequence, firstRecordSequence: start.firstRecordSequence,
      createdMs, resource: this.options.resource,
      origin: this.options.origin, previousDigest,
    });
    const digest = new ContentDigest();
    digest.logfileHeader(header);
    return {
      sequence, path: `${this.options.directory}/${name}`, digest, previousDigest, header,
      fd: -1, directFd: -1, tail: header, sizeBytes: logfileHeaderBytes,
      allocatedBytes: logfileHeaderBytes, preallocateStepBytes: this.limits.preallocateBytesMin,
      recordCount: 0, createdMs,
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
    this.pending ??= this.newBatch(recordBytes);
    const pending = this.pending;
    assert(pending.file === this.file, "a batch belongs to one logfile");
    assert(pending.headBytes + pending.bytes + recordBytes + directBlockBytes <=
      pending.buffer.length, "the record and the padding fit");
    return pending;
  }

  /** A batch that starts with the logfile's last partial block (direct layout). */
  private newBatch(recordBytes: number): Batch {
    const file = this.file;
    const headBytes = file.sizeBytes % this.blockBytes;
    assert(headBytes <= file.tail.length, "the last partial block is known");
    const buffer = this.buffers.take(recordBytes);
    buffer.set(file.tail.subarray(file.tail.length - headBytes), 0);
    return {
      file, startOffset: file.sizeBytes, buffer, headBytes, bytes: 0, recordCount: 0,
      lastSequence: 0, due: false,
    };
  }

  private sealPending(): void {
    if (this.pending === undefined) return;
    const { buffer, headBytes, bytes } = this.pending;
    const usedBytes = headBytes + bytes;
    // The next batch rewrites the block this one ends in (a copy: this buffer is reused).
    this.pending.file.tail = buffer.slice(usedBytes - (usedBytes % this.blockBytes), usedBytes);
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
      if (this.running !== undefined) {
        // The log is busy: the batch keeps growing and goes as soon as the log is free.
        if (this.pending !== undefined) this.pending.due = true;
        return;
      }
      this.sealPending();
      void this.pump();
    });
  }

  /**
   * Whether the open batch goes as soon as the log is free: someone waits for it, its delay is
   * over, or it grew large while the previous batch was committed (group commit).
   */
  private commitsNow(): boolean {
    const pending = this.pending;
    if (pending === undefined) return false;
    return this.waiters.length > 0 || pending.due || pending.bytes >= batchEagerBytesMin;
  }

  /** Commits: one work item at a time, in order; the only place that touches the disk. */
  private pump(): Promise<void> {
    this.running ??= this.drainWork().finally(() => {
      this.running = undefined;
      if (this.commitsNow() && !this.failure) this.sealPending();
      if (this.work.length > 0 && !this.failure) void this.pump();
      else if (this.pending !== undefined && this.timer === undefined) this.armTimer();
    });
    return this.running;
  }

  private async drainWork(): Promise<void> {
    let item: Work | undefined;
    try {
      for (item = this.work.shift(); item !== undefined; item = this.work.shift()) {
        if (this.failure) break;
        await this.perform(item);
        if (this.work.length === 0 && this.commitsNow()) this.sealPending();
      }
    } catch (error) {
      this.fail(error);
      // Its I/O has ended (with the error), so nothing refers to the buffer any more.
      if (item?.kind === "batch") this.buffers.give(item.batch.buffer);
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
    if (file.directFd >= 0) await files.close(file.directFd);
    file.directFd = -1;
    if (file.allocatedBytes > file.sizeBytes) {
      await files.truncate(file.fd, file.sizeBytes);
      await this.submit(file, [{ kind: "fsync", fd: file.fd, dataOnly: false }]);
      file.allocatedBytes = file.sizeBytes;
    }
    await files.close(file.fd);
    file.fd = -1;
  }

  /**
   * Zero-fill writes that make room for the batch (empty when there is room, or when the
   * batch is large enough to extend the logfile itself).
   */
  private preallocate(batch: Batch, fd: number): IoOperation[] {
    const file = batch.file;
    const end = batch.startOffset + batch.bytes;
    if (this.limits.preallocateBytesMax === 0 || end <= file.allocatedBytes) return [];
    if (batch.bytes >= preallocateSkipBatchBytesMin) return [];
    const target = roundUp(Math.max(end, Math.min(
      file.allocatedBytes + file.preallocateStepBytes, this.limits.logfileBytesMax)),
    this.blockBytes);
    const zeroes = this.buffers.zeroes();
    const operations: IoOperation[] = [];
    const from = roundUp(file.allocatedBytes, this.blockBytes);
    for (let offset = from; offset < target; offset += zeroes.length) {
      const length = Math.min(zeroes.length, target - offset);
      operations.push({ kind: "write", fd, offset, buffer: zeroes.subarray(0, length) });
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
    if (this.directChosen === false) return; // the first logfile could not open it
    file.directFd = await files.open(file.path, { direct: true }).catch(() => -1);
    this.directChosen ??= file.directFd >= 0;
  }

  private async commitBatch(batch: Batch): Promise<void> {
    assert(batch.file.fd >= 0, "a batch goes to an open logfile");
    assert(batch.lastSequence === this.durableSequenceValue + batch.recordCount,
      "batches commit in sequence order");
    const usedBytes = batch.headBytes + batch.bytes;
    const lengthBytes = roundUp(usedBytes, this.blockBytes);
    batch.buffer.fill(0, usedBytes, lengthBytes);
    const begin = batch.startOffset - batch.headBytes;
    const fd = batch.file.directFd >= 0 ? batch.file.directFd : batch.file.fd;
    await this.submit(batch.file, [
      ...this.preallocate(batch, fd),
      { kind: "write", fd, offset: begin, buffer: batch.buffer.subarray(0, lengthBytes) },
      { kind: "fsync", fd, dataOnly: true },
    ]);
    batch.file.allocatedBytes = Math.max(batch.file.allocatedBytes, begin + lengthBytes);
    this.unsyncedBytes -= batch.bytes;
    assert(this.unsyncedBytes >= 0, "unsynced bytes never negative");
    this.durableSequenceValue = batch.lastSequence;
    this.durableEndValue = {
      sequence: batch.file.sequence, offsetBytes: batch.startOffset + batch.bytes,
    };
    this.buffers.give(batch.buffer);
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
    // Nothing is written any more: the aligned buffers serve the writers that follow (a
    // restarted resource), as a closed writer's do. Sealed batches never reach the disk now.
    if (this.pending !== undefined) this.buffers.give(this.pending.buffer);
    this.pending = undefined;
    for (const work of this.work) if (work.kind === "batch") this.buffers.give(work.batch.buffer);
    const unwritten = this.work.filter((work) => work.kind !== "batch");
    this.work.splice(0, this.work.length, ...unwritten);
    this.buffers.close();
  }
}
