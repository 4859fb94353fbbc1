/** The log writer's limits and their defaults: batch sizes, delays, logfile rotation. */
export interface LogWriterLimits {
  /**
   * A batch is sealed once it holds this many bytes (it always holds at least one record).
   * While the previous batch is being committed the open one keeps growing up to this, so a
   * busy log commits fewer, larger batches (one fdatasync each).
   */
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
  batchBytesMax: 16 * 1024 * 1024,
  batchRecordsMax: 4096,
  batchDelayMs: 5,
  logfileBytesMax: 1024 * 1024 * 1024,
  logfileAgeMsMax: 60 * 60 * 1000,
  unsyncedBytesMax: 512 * 1024 * 1024,
  preallocateBytesMin: 1024 * 1024,
  preallocateBytesMax: 64 * 1024 * 1024,
};
/**
 * A batch at least this large that runs past the preallocated zeroes extends the logfile
 * itself instead: zeroes would double the bytes the disk writes, and one size change per
 * batch this large costs little.
 */
export const preallocateSkipBatchBytesMin = 1024 * 1024;
/** An open batch this large goes as soon as the log is free, without waiting for its delay. */
export const batchEagerBytesMin = 1024 * 1024;
