/** Reads verified records from a logfile copy between a record boundary and a durable limit. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import {
  decodeLogfileHeader, decodePayload, decodeRecordHeader, logfileHeaderBytes,
  recordHeaderBytes, type LogfileHeader,
} from "../log/format.ts";
import type { ScannedRecord } from "../log/reader.ts";
import type { Storage } from "../platform/types.ts";

/** Bytes read from the file per I/O (a larger record is read whole). */
export const cursorReadBytes = 4 * 1024 * 1024;

/** Why the record at `offset` cannot be used: its bytes are final, so this is a defect. */
export interface RecordDefect {
  readonly offset: number;
  readonly reason: string;
}

export type CursorStep =
  | { readonly kind: "record"; readonly record: ScannedRecord }
  | { readonly kind: "incomplete" }
  | { readonly kind: "defect"; readonly defect: RecordDefect };

/**
 * A cursor over one logfile. Every byte below the limit a caller passes is final (fetched from
 * a peer's durable end and fdatasync'ed here), so a record that fails any check below the limit
 * is a defect, never a torn tail; a record that runs past the limit is merely incomplete.
 */
export class RecordCursor {
  private buffer = new Uint8Array(0);
  private bufferStart = 0;
  /** Sequence of the previous record; undefined when the cursor started mid-file. */
  private lastRecordSequence: number | undefined;
  private lastStamp = 0;

  private constructor(
    private readonly storage: Storage,
    private readonly fd: number,
    readonly path: string,
    readonly header: LogfileHeader,
    public offset: number,
  ) {
    if (offset === logfileHeaderBytes) this.lastRecordSequence = header.firstRecordSequence - 1;
  }

  /** Opens `path` at record boundary `offset` (the header must be complete and valid). */
  static async open(storage: Storage, path: string, offset: number): Promise<RecordCursor> {
    assert(offset >= logfileHeaderBytes, "a cursor starts at or after the logfile header");
    const fd = await storage.files.open(path, { readOnly: true });
    try {
      const bytes = new Uint8Array(logfileHeaderBytes);
      await readExactly(storage, fd, path, 0, bytes);
      const header = decodeLogfileHeader(bytes);
      if (typeof header === "string") {
        throw new MarsError("defective-log", `${path}: offset 0: ${header}`,
          { details: { file: path, offset: 0, reason: header } });
      }
      return new RecordCursor(storage, fd, path, header, offset);
    } catch (error) {
      await storage.files.close(fd);
      throw error;
    }
  }

  /** The last record's sequence (undefined before the first record of a mid-file start). */
  get previousRecordSequence(): number | undefined {
    return this.lastRecordSequence;
  }

  async close(): Promise<void> {
    await this.storage.files.close(this.fd);
  }

  /** The next verified record below `limitBytes`, or why there is none yet. */
  async next(limitBytes: number): Promise<CursorStep> {
    const offset = this.offset;
    if (limitBytes - offset < recordHeaderBytes) return { kind: "incomplete" };
    const headerBytes = await this.bytes(offset, recordHeaderBytes, limitBytes);
    const header = decodeRecordHeader(headerBytes, this.header.sequence, offset);
    if (typeof header === "string") return defect(offset, header);
    const expected = this.lastRecordSequence === undefined ? header.sequence
      : this.lastRecordSequence + 1;
    if (header.sequence !== expected) {
      return defect(offset, `record sequence ${header.sequence}, expected ${expected}`);
    }
    if (header.stamp <= this.lastStamp) return defect(offset, "stamp does not increase");
    const end = offset + recordHeaderBytes + header.storedBytes;
    if (end > limitBytes) return { kind: "incomplete" };
    const stored = await this.bytes(offset + recordHeaderBytes, header.storedBytes, limitBytes);
    const payload = decodePayload(header, stored);
    if (typeof payload === "string") return defect(offset, payload);
    this.offset = end;
    this.lastRecordSequence = header.sequence;
    this.lastStamp = header.stamp;
    return { kind: "record", record: { header, payload, endOffset: end } };
  }

  /** Bytes [offset, offset+length), read ahead in large pieces up to `limitBytes`. */
  private async bytes(offset: number, length: number, limitBytes: number): Promise<Uint8Array> {
    const end = offset + length;
    assert(end <= limitBytes, "reads stay below the durable limit");
    if (offset < this.bufferStart || end > this.bufferStart + this.buffer.length) {
      const readLength = Math.min(Math.max(cursorReadBytes, length), limitBytes - offset);
      const buffer = new Uint8Array(readLength);
      await readExactly(this.storage, this.fd, this.path, offset, buffer);
      this.buffer = buffer;
      this.bufferStart = offset;
    }
    return this.buffer.subarray(offset - this.bufferStart, end - this.bufferStart);
  }
}

function defect(offset: number, reason: string): CursorStep {
  return { kind: "defect", defect: { offset, reason } };
}

/** Reads exactly `buffer.length` bytes at `offset`; a short read means the file shrank. */
export async function readExactly(
  storage: Storage, fd: number, path: string, offset: number, buffer: Uint8Array,
): Promise<void> {
  const [result] = await storage.io.submit([{ kind: "read", fd, offset, buffer }]);
  assert(result !== undefined, "one result per read");
  if (!result.ok) {
    throw new MarsError("io", `${path}: read at ${offset}: ${result.message}`,
      { details: { file: path, offset, errno: result.errno } });
  }
  if (result.bytes < buffer.length) {
    throw new MarsError("io", `${path}: only ${result.bytes} of ${buffer.length} bytes at ` +
      `offset ${offset} (the file is shorter than expected)`);
  }
}
