/** What the log writer keeps per open logfile and per batch, and its queue of disk work. */
import type { ContentDigest } from "./content-digest.ts";

export interface OpenLogfile {
  readonly sequence: number;
  readonly path: string;
  /** Fed the header and each record header as it is appended. */
  readonly digest: ContentDigest;
  readonly previousDigest: Uint8Array;
  readonly header: Uint8Array;
  fd: number;
  /** The same file opened with O_DIRECT for batches (-1: batches use `fd`). */
  directFd: number;
  /** The bytes of the logfile's last partial block (the direct layout rewrites them). */
  tail: Uint8Array;
  /** Bytes assigned so far (durable or not). */
  sizeBytes: number;
  /** Bytes on disk: records, then preallocated zeroes. */
  allocatedBytes: number;
  preallocateStepBytes: number;
  recordCount: number;
  /** Clock time the logfile was started (its header's createdMs). */
  readonly createdMs: number;
}

export interface Batch {
  readonly file: OpenLogfile;
  readonly startOffset: number;
  /**
   * Records are encoded straight into it (one copy per record) after `headBytes`, the end of
   * the logfile's last partial block (direct layout; else 0); `bytes` of records so far.
   */
  readonly buffer: Uint8Array;
  readonly headBytes: number;
  bytes: number;
  recordCount: number;
  lastSequence: number;
  /** Its delay is over: commit it as soon as the log is free. */
  due: boolean;
}

export type Work =
  | { readonly kind: "batch"; readonly batch: Batch }
  | { readonly kind: "create"; readonly file: OpenLogfile }
  | { readonly kind: "finish"; readonly file: OpenLogfile };

