/** The metadata journal: map changes appended (and fsynced) next to the last full snapshot. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { decodeCbor, encodeCbor } from "../platform/cbor.ts";
import type { Storage } from "../platform/types.ts";
import type { WireEntry } from "../cluster/metadata-map.ts";
import type { PeerProgress } from "../cluster/sync.ts";
import { metadataFileBytesMax } from "./atomic-file.ts";

/**
 * One appended change set: the entries learned since the previous save (newest per key), with
 * the clock, change counter and peer progress as they were then.
 */
export interface JournalRecord {
  /** The snapshot this record continues (`journalGeneration` of metadata.cbor). */
  readonly generation: number;
  readonly lamportTime: number;
  readonly seqHigh: number;
  readonly peers: Readonly<Record<string, PeerProgress>>;
  readonly entries: readonly WireEntry[];
  /** Every entry held aside by the membership rule then (usually none). */
  readonly held: readonly WireEntry[];
}

/** Bytes before each record's CBOR: its length and its checksum (u32 big-endian each). */
export const journalRecordHeaderBytes = 8;
/**
 * The journal is folded into a new snapshot once it is larger than this or than twice the
 * last snapshot, whichever is larger: replaying it at start-up stays bounded.
 */
export const journalBytesMin = 4 * 1024 * 1024;

/** FNV-1a (32 bits): finds a torn or overwritten record, not an attack (the home is 0700). */
export function checksum32(bytes: Uint8Array): number {
  let hash = 0x811c9dc5;
  for (let index = 0; index < bytes.length; index++) {
    hash ^= bytes[index]!;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash >>> 0;
}

/** A record as it is appended: header, then CBOR. */
export function encodeRecord(record: JournalRecord): Uint8Array {
  const payload = encodeCbor(record);
  const bytes = new Uint8Array(journalRecordHeaderBytes + payload.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, payload.length);
  view.setUint32(4, checksum32(payload));
  bytes.set(payload, journalRecordHeaderBytes);
  return bytes;
}

/**
 * The records of `generation` at the start of `bytes`, and where they end. Reading stops at
 * the first record that is short, fails its checksum or continues another snapshot: a crash
 * during an append (never acknowledged) or a journal left from before the last snapshot.
 */
export function decodeRecords(
  bytes: Uint8Array, generation: number,
): { records: JournalRecord[]; validBytes: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const records: JournalRecord[] = [];
  let offset = 0;
  while (offset + journalRecordHeaderBytes <= bytes.length) {
    const length = view.getUint32(offset);
    const start = offset + journalRecordHeaderBytes;
    if (start + length > bytes.length) break;
    const payload = bytes.subarray(start, start + length);
    if (checksum32(payload) !== view.getUint32(offset + 4)) break;
    let record: JournalRecord;
    try {
      record = decodeCbor(payload) as JournalRecord;
    } catch {
      break;
    }
    if (!isRecord(record) || record.generation !== generation) break;
    records.push(record);
    offset = start + length;
  }
  return { records, validBytes: offset };
}

function isRecord(value: unknown): value is JournalRecord {
  const record = value as Partial<JournalRecord> | null;
  return typeof record === "object" && record !== null && Array.isArray(record.entries) &&
    Array.isArray(record.held) &&
    Number.isSafeInteger(record.generation) && Number.isSafeInteger(record.seqHigh) &&
    typeof record.lamportTime === "number" && typeof record.peers === "object";
}

/** Appends records to one journal file, each made durable before `append` resolves. */
export class JournalFile {
  constructor(
    private readonly storage: Storage,
    readonly path: string,
    /** Where the valid records end (appends go there). */
    private endBytes: number,
    /** True when bytes past `endBytes` must go first (a torn tail, or a stale journal). */
    private cut: boolean,
  ) {}

  get bytes(): number {
    return this.endBytes;
  }

  async append(record: JournalRecord): Promise<void> {
    const bytes = encodeRecord(record);
    assert(this.endBytes + bytes.length <= metadataFileBytesMax, "the journal stays bounded");
    const created = (await this.storage.files.status(this.path)) === undefined;
    const fd = await this.storage.files.open(this.path, { create: true });
    try {
      if (this.cut) await this.storage.files.truncate(fd, this.endBytes);
      const results = await this.storage.io.submit([
        { kind: "write", fd, offset: this.endBytes, buffer: bytes },
        { kind: "fsync", fd, dataOnly: true },
      ], { ordered: true });
      for (const result of results) {
        if (!result.ok) throw new MarsError("io", `append to ${this.path}: ${result.message}`);
      }
    } finally {
      await this.storage.files.close(fd);
    }
    if (created) await this.storage.files.syncDirectory(parentOf(this.path));
    this.cut = false;
    this.endBytes += bytes.length;
  }
}

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}
