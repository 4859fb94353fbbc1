/** The replayer: applies fetched records to this host's disk strictly in log order, durably. */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import type { BlockDevice } from "../block/types.ts";
import { ParallelApplier } from "../log/apply.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";
import type { Clock } from "../platform/types.ts";
import type { PositionStore } from "../translog/position-store.ts";
import type { LocalLogfile } from "./log-files.ts";
import type { LogExtent } from "./log-server.ts";
import { RecordCursor, type RecordDefect } from "./record-cursor.ts";
import type { Storage } from "../platform/types.ts";

/** Applied bytes after which the replay position is made durable (flush, then persist). */
export const replayCheckpointBytesMax = 64 * 1024 * 1024;
/** After an I/O failure replay is tried again this much later. */
export const replayRetryDelayMs = 5_000;
/** How long applied records may wait for their checkpoint while replay keeps going. */
export const replayCheckpointIntervalMs = 1000;

export type ReplayState =
  | "paused" | "replaying" | "caught-up" | "defective" | "gap" | "failed" | "stopped";

/** What the replayer may read: the fetcher's durable local copies. */
export interface ReplaySource {
  extent(sequence: number): LogExtent | undefined;
  logfile(sequence: number): LocalLogfile | undefined;
}

export interface ReplayerOptions {
  readonly device: BlockDevice;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly store: PositionStore;
  readonly source: ReplaySource;
  /** A record failed verification: replay stopped before it. */
  readonly defective: (defect: { sequence: number; path: string } & RecordDefect) => void;
  readonly progressed: () => void;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Record<string, unknown>) => void;
}

export class Replayer {
  state: ReplayState = "paused";
  problem = "";
  /** Every record before this is on the disk, the disk is flushed, the position persisted. */
  position: LogPosition;
  /** Bytes of records applied since start (for rates). */
  appliedBytesTotal = 0;
  private applied: LogPosition;
  private applier: ParallelApplier;
  private cursor: RecordCursor | undefined;
  private running: Promise<void> | undefined;
  private again = false;
  private paused = true;
  private stopped = false;
  private uncheckpointedBytes = 0;
  private failedAtMs = 0;
  private checkpointDueMs = 0;

  constructor(private readonly options: ReplayerOptions, start: LogPosition) {
    this.position = start;
    this.applied = start;
    this.applier = new ParallelApplier(options.device);
  }

  /** Stops after the current record; the state reads "paused" once the checkpoint is done. */
  pause(): void {
    this.paused = true;
    if (!this.running) this.settlePaused();
  }

  private settlePaused(): void {
    if (this.paused && (this.state === "replaying" || this.state === "caught-up")) {
      this.state = "paused";
    }
  }

  /** Resumes replay (after a pause, or after a repaired defect). */
  resume(): void {
    if (this.stopped) return;
    this.paused = false;
    if (this.state !== "failed") this.state = "replaying";
    this.kick();
  }

  /** Tries again `replayRetryDelayMs` after an I/O failure stopped replay. */
  retryAfterFailure(): void {
    if (this.state !== "failed" || this.running || this.stopped) return;
    if (this.options.clock.monotonicMs() - this.failedAtMs < replayRetryDelayMs) return;
    this.state = this.paused ? "paused" : "replaying";
    this.problem = "";
    this.kick();
  }

  /** New bytes were fetched: continue if replay is on. */
  kick(): void {
    if (this.paused || this.stopped || this.state === "failed") return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = this.run().finally(() => {
      this.running = undefined;
      this.settlePaused();
      if (this.again) {
        this.again = false;
        this.kick();
      }
    });
  }

  /** Waits for the running pass, checkpoints, closes the cursor. */
  async stop(): Promise<void> {
    this.stopped = true;
    while (this.running) await this.running;
    await this.checkpoint().catch(() => {});
    await this.closeCursor();
    this.state = "stopped";
  }

  /** Whether a pass is running (applied records may be ahead of `position` meanwhile). */
  get busy(): boolean {
    return this.running !== undefined;
  }

  /** Resolves once no pass runs (for pause and tests). */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  private async run(): Promise<void> {
    try {
      await this.replay();
      await this.checkpoint();
    } catch (error) {
      if (!isMarsError(error)) throw error;
      await this.rewind();
      this.state = "failed";
      this.problem = error.message;
      this.failedAtMs = this.options.clock.monotonicMs();
      this.options.log("error", "replay-failed", { reason: error.message });
    }
  }

  /**
   * After a failure: records after the durable position may have failed (the applier keeps its
   * first failure, and the cursor has moved past them), so the next try starts over from there
   * with a fresh applier. Applying them again, in log order, is harmless.
   */
  private async rewind(): Promise<void> {
    await this.applier.drain().catch(() => {});
    this.applier = new ParallelApplier(this.options.device);
    await this.closeCursor().catch(() => {});
    this.applied = this.position;
    this.uncheckpointedBytes = 0;
  }

  private async replay(): Promise<void> {
    this.checkpointDueMs = this.options.clock.monotonicMs() + replayCheckpointIntervalMs;
    while (!this.paused && !this.stopped) {
      const extent = this.options.source.extent(this.applied.sequence);
      if (!extent) return this.idle();
      const cursor = await this.cursorAt(this.applied);
      const step = await cursor.next(extent.lengthBytes);
      if (step.kind === "record") {
        if (step.record.header.kind === "gap") return this.stopAtGap();
        await this.applier.apply(step.record);
        this.applied = { sequence: this.applied.sequence, offsetBytes: step.record.endOffset };
        this.appliedBytesTotal += step.record.endOffset - step.record.header.fileOffset;
        this.uncheckpointedBytes += step.record.payload.length;
        await this.checkpointWhenDue();
      } else if (step.kind === "defect") {
        return this.stopAtDefect(cursor, step.defect);
      } else if (!extent.finished) {
        return this.idle();
      } else if (cursor.offset < extent.lengthBytes) {
        return this.stopAtDefect(cursor, {
          offset: cursor.offset, reason: "a record runs past the end of a finished logfile",
        });
      } else if (!(await this.nextLogfile(cursor))) {
        return this.idle();
      }
    }
  }

  /** Moves to the next logfile when it is here and continues the record sequence. */
  private async nextLogfile(cursor: RecordCursor): Promise<boolean> {
    const sequence = this.applied.sequence + 1;
    if (!this.options.source.extent(sequence)) return false;
    const next = await this.cursorAt({ sequence, offsetBytes: logfileHeaderBytes });
    const previous = cursor.previousRecordSequence;
    if (previous !== undefined && next.header.firstRecordSequence !== previous + 1) {
      await this.stopAtDefect(next, { offset: 0, reason: `first record ` +
        `${next.header.firstRecordSequence} does not continue ${previous}` });
      return false;
    }
    this.applied = { sequence, offsetBytes: logfileHeaderBytes };
    return true;
  }

  private async cursorAt(position: LogPosition): Promise<RecordCursor> {
    const current = this.cursor;
    if (current && current.header.sequence === position.sequence) return current;
    await this.closeCursor();
    const file = this.options.source.logfile(position.sequence);
    assert(file !== undefined, "replay reads a logfile that is here");
    this.cursor = await RecordCursor.open(this.options.storage, file.path, position.offsetBytes);
    return this.cursor;
  }

  private async closeCursor(): Promise<void> {
    const cursor = this.cursor;
    this.cursor = undefined;
    await cursor?.close();
  }

  private idle(): void {
    if (this.state === "replaying") this.state = "caught-up";
  }

  private async stopAtGap(): Promise<void> {
    this.state = "gap";
    this.problem = `a gap record at ${this.applied.sequence}@${this.applied.offsetBytes}: ` +
      "history is missing here (emergency mode on the primary)";
    this.paused = true;
  }

  private async stopAtDefect(cursor: RecordCursor, defect: RecordDefect): Promise<void> {
    await this.checkpoint();
    await this.closeCursor();
    this.state = "defective";
    this.paused = true;
    this.problem = `${cursor.path}: offset ${defect.offset}: ${defect.reason}`;
    this.options.log("error", "replay-defective", {
      file: cursor.path, offset: defect.offset, reason: defect.reason,
    });
    this.options.defective({ sequence: cursor.header.sequence, path: cursor.path, ...defect });
  }

  private async checkpointWhenDue(): Promise<void> {
    const now = this.options.clock.monotonicMs();
    if (this.uncheckpointedBytes < replayCheckpointBytesMax && now < this.checkpointDueMs) return;
    this.checkpointDueMs = now + replayCheckpointIntervalMs;
    await this.checkpoint();
  }

  /** Phase "checkpoint": drain the applies, flush the disk, then persist the position. */
  private async checkpoint(): Promise<void> {
    await this.applier.drain();
    if (comparePositions(this.applied, this.position) === 0) return;
    assert(comparePositions(this.applied, this.position) > 0, "replay never moves backwards");
    await this.options.device.flush();
    await this.options.store.write(this.applied);
    this.position = this.applied;
    this.uncheckpointedBytes = 0;
    this.options.progressed();
  }
}
