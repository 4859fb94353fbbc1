/** Scans a logfile: verifies every record, delivers them in order, tells a torn tail from rot. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { IoEngine, Storage } from "../platform/types.ts";
import { ContentDigest } from "./content-digest.ts";
import {
  decodeLogfileHeader, decodePayload, decodeRecordHeader, logfileHeaderBytes, recordBytesMax,
  recordHeaderBytes, recordMagic, type LogfileHeader, type RecordHeader,
} from "./format.ts";

/** Bytes read per I/O while scanning; a window always holds one whole record. */
export const scanWindowBytes = 2 * recordBytesMax;
/** Bytes read per I/O while searching past a bad record for a later batch. */
export const searchChunkBytes = 1024 * 1024;

export interface ScannedRecord {
  readonly header: RecordHeader;
  /** The uncompressed payload of a write (empty for other kinds); never overwritten later. */
  readonly payload: Uint8Array;
  /** Offset just after this record: the position once it is applied. */
  readonly endOffset: number;
}

export interface TornTail {
  readonly offset: number;
  readonly reason: string;
}

export interface ScanResult {
  readonly path: string;
  readonly header: LogfileHeader;
  readonly fileSizeBytes: number;
  /** End of the last valid record: where the log continues (or is truncated to). */
  readonly endOffset: number;
  readonly recordCount: number;
  /** Sequence of the last valid record (firstRecordSequence - 1 when there is none). */
  readonly lastRecordSequence: number;
  readonly lastStamp: number;
  /** The content digest (content-digest.ts) of bytes [0, endOffset), for the version chain. */
  readonly contentDigest: Uint8Array;
  /** Present when bytes after `endOffset` are an interrupted last batch. */
  readonly tornTail?: TornTail;
  /** Zero bytes after `endOffset` that the writer preallocated (not records, not damage). */
  readonly preallocatedBytes: number;
}

export interface ScanOptions {
  /** Records starting before this offset are verified but not delivered. */
  readonly fromOffset?: number;
  readonly onRecord?: (record: ScannedRecord) => void | Promise<void>;
}

/** A defect that is not a torn tail: the error names file and offset, exit code 7. */
export function defectiveLog(path: string, offset: number, reason: string): MarsError {
  return new MarsError("defective-log", `${path}: offset ${offset}: ${reason}`, {
    details: { file: path, offset, reason },
  });
}

/**
 * Reads `path` from the start. Every record is checked (header checksum bound to the logfile,
 * placement, sequence, stamp order, payload checksum) before it is delivered. A bad record
 * followed by a valid record of a later group-commit batch is corruption: a MarsError
 * "defective-log" naming file and offset, and nothing after it is delivered. A bad record with
 * no later batch behind it is a torn tail (the last batch was interrupted by a crash): the scan
 * ends there and reports it in `tornTail`.
 */
export async function scanLogfile(
  storage: Storage, path: string, options: ScanOptions = {},
): Promise<ScanResult> {
  const fd = await storage.files.open(path, { readOnly: true });
  try {
    return await scanOpen(storage, fd, path, options);
  } finally {
    await storage.files.close(fd);
  }
}

async function scanOpen(
  storage: Storage, fd: number, path: string, options: ScanOptions,
): Promise<ScanResult> {
  const fileSizeBytes = await storage.files.sizeOf(fd);
  const window = new Window(storage.io, fd, path, fileSizeBytes);
  const headerBytes = await window.bytes(0, Math.min(logfileHeaderBytes, fileSizeBytes));
  const header = decodeLogfileHeader(headerBytes);
  if (typeof header === "string") {
    throw new MarsError("defective-log", `${path}: offset 0: ${header}`, {
      details: { file: path, offset: 0, reason: header, headerProblem: true, fileSizeBytes },
    });
  }
  window.logfileSequence = header.sequence;
  const digest = new ContentDigest();
  digest.logfileHeader(headerBytes);
  const state = {
    offset: logfileHeaderBytes, recordCount: 0,
    lastRecordSequence: header.firstRecordSequence - 1, lastStamp: 0,
  };
  let tornTail: TornTail | undefined;
  while (state.offset < fileSizeBytes) {
    const outcome = await readRecord(window, header, state);
    if (typeof outcome === "string") {
      if (await zeroesToEnd(window, state.offset)) break;
      tornTail = await judgeBadRecord(window, state.offset, outcome);
      break;
    }
    const end = outcome.endOffset;
    digest.recordHeader(await window.bytes(state.offset, recordHeaderBytes));
    if (state.offset >= (options.fromOffset ?? 0)) await options.onRecord?.(outcome);
    state.offset = end;
    state.recordCount++;
    state.lastRecordSequence = outcome.header.sequence;
    state.lastStamp = outcome.header.stamp;
  }
  assert(state.offset <= fileSizeBytes, "scan ends inside the file");
  return {
    path, header, fileSizeBytes, endOffset: state.offset, recordCount: state.recordCount,
    lastRecordSequence: state.lastRecordSequence, lastStamp: state.lastStamp,
    contentDigest: digest.digest(), ...(tornTail ? { tornTail } : {}),
    preallocatedBytes: tornTail ? 0 : fileSizeBytes - state.offset,
  };
}

interface ScanState {
  readonly offset: number;
  readonly lastRecordSequence: number;
  readonly lastStamp: number;
}

/** The verified record at `state.offset`, or why it is not a valid next record. */
async function readRecord(
  window: Window, logfile: LogfileHeader, state: ScanState,
): Promise<ScannedRecord | string> {
  const { offset } = state;
  if (window.sizeBytes - offset < recordHeaderBytes) return "incomplete record header";
  const header = decodeRecordHeader(
    await window.bytes(offset, recordHeaderBytes), logfile.sequence, offset);
  if (typeof header === "string") return header;
  if (header.sequence !== state.lastRecordSequence + 1) {
    return `record sequence ${header.sequence}, expected ${state.lastRecordSequence + 1}`;
  }
  if (header.stamp <= state.lastStamp) return `stamp ${header.stamp} does not increase`;
  const endOffset = offset + recordHeaderBytes + header.storedBytes;
  if (endOffset > window.sizeBytes) return "record extends past the end of the file";
  const stored = await window.bytes(offset + recordHeaderBytes, header.storedBytes);
  const payload = decodePayload(header, stored);
  if (typeof payload === "string") return payload;
  return { header, payload, endOffset };
}

/** Whether every byte from `offset` to the end of the file is zero (preallocated space). */
async function zeroesToEnd(window: Window, offset: number): Promise<boolean> {
  for (let start = offset; start < window.sizeBytes; start += searchChunkBytes) {
    const chunk = await window.bytes(start, Math.min(searchChunkBytes, window.sizeBytes - start));
    for (let index = 0; index < chunk.length; index++) if (chunk[index] !== 0) return false;
  }
  return true;
}

/**
 * Decides what a bad record at `offset` is. The writer starts a batch only after the previous
 * one is durable, so a crash can damage only the last batch: if any later record verifies and
 * belongs to a batch that starts after `offset`, the bad record was durable before it, and it is
 * corruption. Otherwise it is a torn tail.
 */
async function judgeBadRecord(window: Window, offset: number, reason: string): Promise<TornTail> {
  const later = await findLaterBatch(window, offset);
  if (later !== undefined) {
    throw defectiveLog(window.path, offset,
      `${reason} (a later batch at offset ${later} verifies, so this is not a torn tail)`);
  }
  return { offset, reason };
}

async function findLaterBatch(window: Window, badOffset: number): Promise<number | undefined> {
  for (let start = badOffset + 1; start + recordHeaderBytes <= window.sizeBytes;) {
    const length = Math.min(searchChunkBytes + recordHeaderBytes, window.sizeBytes - start);
    const chunk = (await window.bytes(start, length)).slice();
    const view = new DataView(chunk.buffer);
    for (let index = 0; index + recordHeaderBytes <= chunk.length; index++) {
      if (view.getUint32(index, true) !== recordMagic) continue;
      const candidate = start + index;
      const header = decodeRecordHeader(
        chunk.subarray(index, index + recordHeaderBytes), window.logfileSequence, candidate);
      if (typeof header !== "string" && header.batchStartOffset > badOffset) return candidate;
    }
    start += searchChunkBytes;
  }
  return undefined;
}

/** A sliding read window over one file, so a scan holds at most `scanWindowBytes` in memory. */
class Window {
  private buffer = new Uint8Array(0);
  private start = 0;
  logfileSequence = 0;

  constructor(
    private readonly io: IoEngine,
    private readonly fd: number,
    readonly path: string,
    readonly sizeBytes: number,
  ) {}

  /** Bytes [offset, offset+length); valid until the next call. */
  async bytes(offset: number, length: number): Promise<Uint8Array> {
    assert(length <= scanWindowBytes, "a read fits the scan window");
    assert(offset + length <= this.sizeBytes, "reads stay inside the file");
    const end = offset + length;
    if (offset < this.start || end > this.start + this.buffer.length) await this.fill(offset);
    return this.buffer.subarray(offset - this.start, end - this.start);
  }

  private async fill(offset: number): Promise<void> {
    const length = Math.min(scanWindowBytes, this.sizeBytes - offset);
    const buffer = new Uint8Array(length);
    const [result] = await this.io.submit([{ kind: "read", fd: this.fd, offset, buffer }]);
    assert(result !== undefined, "one result per read");
    if (!result.ok) {
      throw new MarsError("io", `${this.path}: read at ${offset}: ${result.message}`, {
        details: { file: this.path, offset, errno: result.errno },
      });
    }
    if (result.bytes < length) throw defectiveLog(this.path, offset + result.bytes, "file shrank");
    this.buffer = buffer;
    this.start = offset;
  }
}

