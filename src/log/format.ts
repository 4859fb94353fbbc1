/** The logfile byte format: the file header and the record framing, encoded and verified. */
import { assert } from "../lib/assert.ts";
import { crc32, xxHash3 } from "../platform/hash.ts";
import { zstdCompress, zstdDecompress } from "../platform/compress.ts";

// Every layout below is documented byte by byte in docs/log-format.md; change both together.

export const logFormatVersion = 2;
/** "MARSLOG\n": the first eight bytes of every logfile. */
export const logfileMagic = new Uint8Array([0x4d, 0x41, 0x52, 0x53, 0x4c, 0x4f, 0x47, 0x0a]);
export const logfileHeaderBytes = 256;
/** Resource and host names are stored in 64-byte fields: one length byte and the UTF-8 text. */
export const logNameBytesMax = 63;
/** "MREC" read as a little-endian u32: the first four bytes of every record. */
export const recordMagic = 0x4345524d;
export const recordHeaderBytes = 80;
/** Where a record header keeps its stored payload length (u32); the content digest reads it. */
export const recordStoredBytesOffset = 40;
/** Largest payload one record carries (a write request larger than this is split). */
export const recordPayloadBytesMax = 8 * 1024 * 1024;
/** Largest device range one payload-less record (trim, write-zeroes) covers. */
export const recordRangeBytesMax = 1024 * 1024 * 1024 * 1024;
export const recordBytesMax = recordHeaderBytes + recordPayloadBytesMax + 64;

export const recordKinds = ["write", "trim", "write-zeroes", "gap"] as const;
export type RecordKind = (typeof recordKinds)[number];
const kindCodes: Record<RecordKind, number> = {
  "write": 1, "trim": 2, "write-zeroes": 3, "gap": 4,
};
export const codecs = ["none", "zstd"] as const;
export type Codec = (typeof codecs)[number];

export interface LogfileHeader {
  readonly formatVersion: number;
  /** Resource-wide number of this logfile (1, 2, …); it names the file. */
  readonly sequence: number;
  /** Resource-wide sequence number of the first record in this file. */
  readonly firstRecordSequence: number;
  /** Wall-clock time the origin created the file (for people; never for ordering). */
  readonly createdMs: number;
  readonly resource: string;
  /** The host that wrote the file; copies elsewhere keep the name and the bytes. */
  readonly origin: string;
  /** Chain digest of the previous logfile (all zeroes when the chain starts here). */
  readonly previousDigest: Uint8Array;
}

export interface RecordHeader {
  readonly kind: RecordKind;
  readonly codec: Codec;
  /** Resource-wide record number: consecutive within and across logfiles. */
  readonly sequence: number;
  /** Lamport stamp: strictly increasing along the log. */
  readonly stamp: number;
  readonly deviceOffset: number;
  /** Device bytes the record covers (the uncompressed payload length for writes). */
  readonly lengthBytes: number;
  /** Payload bytes stored in the file after the header. */
  readonly storedBytes: number;
  readonly payloadChecksum: bigint;
  /** crc32 of the stored (compressed) bytes; 0 when stored uncompressed. */
  readonly storedChecksum: number;
  /** Where the record starts in its logfile: a record copied elsewhere fails verification. */
  readonly fileOffset: number;
  /** Where its group-commit batch starts: tells a torn tail from corruption (see reader). */
  readonly batchStartOffset: number;
}

export interface RecordInput {
  readonly kind: RecordKind;
  readonly sequence: number;
  readonly stamp: number;
  readonly deviceOffset: number;
  readonly lengthBytes: number;
  /** The data of a write; absent for other kinds. */
  readonly payload?: Uint8Array;
}

export interface RecordPlacement {
  readonly logfileSequence: number;
  readonly fileOffset: number;
  readonly batchStartOffset: number;
}

// --- logfile header ---

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder("utf-8", { fatal: true });

/** A name usable in a logfile header and in its file name. */
export function isLogName(name: string): boolean {
  return /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(name);
}

export function encodeLogfileHeader(header: LogfileHeader): Uint8Array {
  assert(isLogName(header.resource), "resource name fits a logfile header");
  assert(isLogName(header.origin), "host name fits a logfile header");
  assert(header.previousDigest.length === 32, "previous digest is 32 bytes");
  assert(header.sequence >= 1 && header.firstRecordSequence >= 1, "sequences start at 1");
  const bytes = new Uint8Array(logfileHeaderBytes);
  const view = new DataView(bytes.buffer);
  bytes.set(logfileMagic, 0);
  view.setUint16(8, logFormatVersion, true);
  view.setUint16(10, logfileHeaderBytes, true);
  view.setUint32(12, 0, true);
  setU64(view, 16, header.sequence);
  setU64(view, 24, header.firstRecordSequence);
  setU64(view, 32, header.createdMs);
  putName(bytes, 40, header.resource);
  putName(bytes, 104, header.origin);
  bytes.set(header.previousDigest, 168);
  view.setBigUint64(248, xxHash3(bytes.subarray(0, 248)), true);
  return bytes;
}

/** The header, or the reason the first `logfileHeaderBytes` are not a valid one. */
export function decodeLogfileHeader(bytes: Uint8Array): LogfileHeader | string {
  if (bytes.length < logfileHeaderBytes) return "file shorter than a logfile header";
  for (let index = 0; index < logfileMagic.length; index++) {
    if (bytes[index] !== logfileMagic[index]) return "not a mars logfile (bad magic)";
  }
  const view = viewOf(bytes);
  if (view.getBigUint64(248, true) !== xxHash3(bytes.subarray(0, 248))) {
    return "logfile header checksum mismatch";
  }
  const formatVersion = view.getUint16(8, true);
  if (formatVersion !== logFormatVersion) return `unsupported log format ${formatVersion}`;
  if (view.getUint16(10, true) !== logfileHeaderBytes) return "unexpected logfile header size";
  const resource = takeName(bytes, 40);
  const origin = takeName(bytes, 104);
  if (resource === undefined || origin === undefined) return "malformed name in logfile header";
  const header: LogfileHeader = {
    formatVersion,
    sequence: getU64(view, 16),
    firstRecordSequence: getU64(view, 24),
    createdMs: getU64(view, 32),
    resource,
    origin,
    previousDigest: bytes.slice(168, 200),
  };
  if (header.sequence < 1 || header.firstRecordSequence < 1) return "sequence numbers below 1";
  return header;
}

function putName(bytes: Uint8Array, offset: number, name: string): void {
  const encoded = textEncoder.encode(name);
  assert(encoded.length <= logNameBytesMax, "name fits its field");
  bytes[offset] = encoded.length;
  bytes.set(encoded, offset + 1);
}

function takeName(bytes: Uint8Array, offset: number): string | undefined {
  const length = bytes[offset]!;
  if (length === 0 || length > logNameBytesMax) return undefined;
  try {
    const name = textDecoder.decode(bytes.subarray(offset + 1, offset + 1 + length));
    return isLogName(name) ? name : undefined;
  } catch {
    return undefined;
  }
}

// --- records ---

/** Encodes one record: header then stored payload (zstd only when it shrinks the data). */
export function encodeRecord(
  input: RecordInput, placement: RecordPlacement, codec: Codec = "none",
): Uint8Array {
  const stored = storedPayloadOf(input, codec);
  const bytes = new Uint8Array(recordHeaderBytes + stored.data.length);
  writeRecord(input, placement, stored, bytes);
  return bytes;
}

/**
 * Encodes one record into `target` at `targetOffset` (the log writer's batch buffer, so a
 * record is copied once); returns its length, at most `recordHeaderBytes` + payload length.
 */
export function encodeRecordInto(
  input: RecordInput, placement: RecordPlacement, codec: Codec,
  target: Uint8Array, targetOffset: number,
): number {
  const stored = storedPayloadOf(input, codec);
  const recordBytes = recordHeaderBytes + stored.data.length;
  assert(targetOffset + recordBytes <= target.length, "the record fits its target");
  writeRecord(input, placement, stored, target.subarray(targetOffset, targetOffset + recordBytes));
  return recordBytes;
}

interface StoredPayload {
  readonly data: Uint8Array;
  readonly codec: Codec;
}

function storedPayloadOf(input: RecordInput, codec: Codec): StoredPayload {
  const payload = input.payload ?? new Uint8Array(0);
  assertRecordInput(input, payload);
  if (codec === "zstd" && payload.length > 0) {
    const compressed = zstdCompress(payload);
    if (compressed.length < payload.length) return { data: compressed, codec: "zstd" };
  }
  return { data: payload, codec: "none" };
}

/** Header then stored payload into `bytes` (exactly the record's length). */
function writeRecord(
  input: RecordInput, placement: RecordPlacement, stored: StoredPayload, bytes: Uint8Array,
): void {
  assert(placement.batchStartOffset <= placement.fileOffset, "a batch starts before its records");
  assert(placement.batchStartOffset >= logfileHeaderBytes, "records follow the logfile header");
  assert(bytes.length === recordHeaderBytes + stored.data.length, "record bytes fit exactly");
  const payload = input.payload ?? new Uint8Array(0);
  const view = new DataView(bytes.buffer, bytes.byteOffset, recordHeaderBytes);
  view.setUint32(0, recordMagic, true);
  view.setUint8(4, kindCodes[input.kind]);
  view.setUint8(5, codecs.indexOf(stored.codec));
  view.setUint16(6, 0, true);
  setU64(view, 8, input.sequence);
  setU64(view, 16, input.stamp);
  setU64(view, 24, input.deviceOffset);
  setU64(view, 32, input.lengthBytes);
  view.setUint32(recordStoredBytesOffset, stored.data.length, true);
  // A compressed stream can change without changing what it decodes to: check it as stored.
  view.setUint32(44, stored.codec === "none" ? 0 : crc32(stored.data), true);
  view.setBigUint64(48, xxHash3(payload), true);
  setU64(view, 56, placement.fileOffset);
  setU64(view, 64, placement.batchStartOffset);
  view.setBigUint64(72, headerChecksum(bytes, placement.logfileSequence), true);
  bytes.set(stored.data, recordHeaderBytes);
}

function assertRecordInput(input: RecordInput, payload: Uint8Array): void {
  assert(Number.isSafeInteger(input.sequence) && input.sequence >= 1, "record sequence ≥ 1");
  assert(Number.isSafeInteger(input.stamp) && input.stamp >= 0, "stamp is a safe integer");
  assert(Number.isSafeInteger(input.deviceOffset) && input.deviceOffset >= 0, "offset ≥ 0");
  assert(Number.isSafeInteger(input.deviceOffset + input.lengthBytes), "range end is safe");
  if (input.kind === "write") {
    assert(payload.length === input.lengthBytes, "a write's payload covers its length");
    assert(payload.length <= recordPayloadBytesMax, "payload within its limit");
  } else {
    assert(payload.length === 0, "only writes carry a payload");
    assert(input.lengthBytes <= recordRangeBytesMax, "range within its limit");
  }
}

function headerChecksum(header: Uint8Array, logfileSequence: number): bigint {
  return xxHash3(header.subarray(0, 72), BigInt(logfileSequence));
}

/**
 * The record header at the start of `bytes`, or why it is not one. Checks magic, checksum
 * (which binds it to its logfile), placement and field ranges; not the payload.
 */
export function decodeRecordHeader(
  bytes: Uint8Array, logfileSequence: number, fileOffset: number,
): RecordHeader | string {
  if (bytes.length < recordHeaderBytes) return "incomplete record header";
  const view = viewOf(bytes);
  if (view.getUint32(0, true) !== recordMagic) return "bad record magic";
  if (view.getBigUint64(72, true) !== headerChecksum(bytes, logfileSequence)) {
    return "record header checksum mismatch";
  }
  const kind = recordKinds[view.getUint8(4) - 1];
  const codec = codecs[view.getUint8(5)];
  if (kind === undefined) return `unknown record kind ${view.getUint8(4)}`;
  if (codec === undefined) return `unknown codec ${view.getUint8(5)}`;
  const header: RecordHeader = {
    kind, codec,
    sequence: getU64(view, 8),
    stamp: getU64(view, 16),
    deviceOffset: getU64(view, 24),
    lengthBytes: getU64(view, 32),
    storedBytes: view.getUint32(recordStoredBytesOffset, true),
    payloadChecksum: view.getBigUint64(48, true),
    storedChecksum: view.getUint32(44, true),
    fileOffset: getU64(view, 56),
    batchStartOffset: getU64(view, 64),
  };
  return checkHeaderFields(header, fileOffset);
}

function checkHeaderFields(header: RecordHeader, fileOffset: number): RecordHeader | string {
  if (header.fileOffset !== fileOffset) {
    return `record claims offset ${header.fileOffset} but sits at ${fileOffset}`;
  }
  if (header.batchStartOffset > fileOffset || header.batchStartOffset < logfileHeaderBytes) {
    return "batch start outside the file's records";
  }
  if (header.kind === "write") {
    if (header.lengthBytes > recordPayloadBytesMax) return "write longer than the payload limit";
    if (header.codec === "none" && header.storedBytes !== header.lengthBytes) {
      return "stored length differs from the write length";
    }
    if (header.storedBytes > recordPayloadBytesMax) return "stored payload beyond the limit";
    if (header.codec === "none" && header.storedChecksum !== 0) return "stored checksum set";
  } else {
    if (header.storedBytes !== 0 || header.codec !== "none") return "payload on a non-write";
    if (header.lengthBytes > recordRangeBytesMax) return "range longer than the limit";
  }
  if (!Number.isSafeInteger(header.deviceOffset + header.lengthBytes)) return "range overflows";
  return header;
}

/** The uncompressed payload of a record whose header verified, or why it does not verify. */
export function decodePayload(header: RecordHeader, stored: Uint8Array): Uint8Array | string {
  assert(stored.length === header.storedBytes, "caller passes exactly the stored payload");
  let payload = stored;
  if (header.codec === "zstd") {
    if (crc32(stored) !== header.storedChecksum) return "compressed payload checksum mismatch";
    try {
      payload = zstdDecompress(stored);
    } catch {
      return "payload does not decompress";
    }
    if (payload.length !== header.lengthBytes) return "decompressed length differs";
  }
  if (xxHash3(payload) !== header.payloadChecksum) return "payload checksum mismatch";
  return payload;
}

export function recordStoredEnd(header: RecordHeader): number {
  return header.fileOffset + recordHeaderBytes + header.storedBytes;
}

// --- helpers ---

function viewOf(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function setU64(view: DataView, offset: number, value: number): void {
  assert(Number.isSafeInteger(value) && value >= 0, "u64 field holds a safe integer");
  view.setBigUint64(offset, BigInt(value), true);
}

/** Values above 2^53 are not produced by mars; they decode as -1 and fail range checks. */
function getU64(view: DataView, offset: number): number {
  const value = view.getBigUint64(offset, true);
  return value > BigInt(Number.MAX_SAFE_INTEGER) ? -1 : Number(value);
}
