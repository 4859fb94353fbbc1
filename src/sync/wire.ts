/** The full sync on the `sync` channel: its messages, their checks, and both ends' adapters. */
import { MarsError } from "../lib/errors.ts";
import { chunkBlocksMax, syncChunkBytes } from "./chunk.ts";

export type SyncMessage =
  | { type: "sync-begin"; resource: string; time: number }
  | { type: "sync-begun"; source: string; sizeBytes: number; startSequence: number;
      startOffset: number; time: number }
  | { type: "sync-compare"; offset: number; length: number; blockBytes: number;
      digests: Uint8Array; chunkDigest?: Uint8Array; time: number }
  | { type: "sync-blocks"; offset: number; indexes: Uint8Array; compressed: Uint8Array;
      time: number }
  | { type: "sync-end"; time: number }
  // wait-sync's targets: the primary's log ends now (no sync begun), one round trip
  | { type: "sync-log-end"; resources: string[]; time: number }
  | { type: "sync-log-ends"; ends: LogEndAnswer[]; time: number }
  | { type: "sync-ended"; sequence: number; offset: number; time: number }
  | { type: "sync-refused"; code: string; reason: string; time: number };

/** One resource's log end as its primary answers: a position, or why there is none. */
export type LogEndAnswer =
  | { resource: string; sequence: number; offset: number }
  | { resource: string; code: string; reason: string };

/** Resources one `sync-log-end` may ask about (a host's wait-sync asks once per primary). */
export const logEndResourcesMax = 10_000;

export type SyncOutgoing = SyncMessage extends infer M
  ? (M extends { time: number } ? Omit<M, "time"> : never) : never;

/** The part of a transport session the sync needs (sends are stamped by the channel). */
export interface SyncWire {
  send(message: SyncOutgoing): boolean;
  close(): void;
}

/** zstd may grow incompressible blocks a little; a reply is never larger than this. */
const compressedBytesMax = syncChunkBytes * 2;
const textBytesMax = 1024;

function fail(what: string): never {
  throw new MarsError("protocol", `malformed sync message: ${what}`);
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) fail(what);
  return value;
}

function text(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length > textBytesMax) fail(what);
  return value;
}

function bytes(value: unknown, bytesMax: number, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length > bytesMax) fail(what);
  return value;
}

function list(value: unknown, what: string): unknown[] {
  if (!Array.isArray(value) || value.length > logEndResourcesMax) fail(what);
  return value;
}

function logEndAnswer(value: unknown): LogEndAnswer {
  const record = value as Record<string, unknown> | null;
  if (typeof record !== "object" || record === null) fail("log end");
  const resource = text(record.resource, "resource");
  if (record.code !== undefined) {
    return { resource, code: text(record.code, "code"), reason: text(record.reason, "reason") };
  }
  return { resource, sequence: count(record.sequence, "sequence"),
    offset: count(record.offset, "offset") };
}

/** Checks a decoded frame whose type starts with "sync-"; undefined for other types. */
export function parseSyncMessage(
  record: Record<string, unknown>, time: number,
): SyncMessage | undefined {
  switch (record.type) {
    case "sync-begin": return { type: "sync-begin", resource: text(record.resource, "resource"),
      time };
    case "sync-begun": return { type: "sync-begun", source: text(record.source, "source"),
      sizeBytes: count(record.sizeBytes, "size"), startSequence: count(record.startSequence,
        "start sequence"), startOffset: count(record.startOffset, "start offset"), time };
    case "sync-compare": return { type: "sync-compare", offset: count(record.offset, "offset"),
      length: count(record.length, "length"), blockBytes: count(record.blockBytes, "block"),
      digests: bytes(record.digests, chunkBlocksMax * 8, "digests"),
      ...(record.chunkDigest === undefined ? {}
        : { chunkDigest: bytes(record.chunkDigest, 8, "chunk digest") }), time };
    case "sync-blocks": return { type: "sync-blocks", offset: count(record.offset, "offset"),
      indexes: bytes(record.indexes, chunkBlocksMax * 4, "indexes"),
      compressed: bytes(record.compressed, compressedBytesMax, "blocks"), time };
    case "sync-end": return { type: "sync-end", time };
    case "sync-log-end": return { type: "sync-log-end",
      resources: list(record.resources, "resources").map((item) => text(item, "resource")),
      time };
    case "sync-log-ends": return { type: "sync-log-ends",
      ends: list(record.ends, "ends").map(logEndAnswer), time };
    case "sync-ended": return { type: "sync-ended", sequence: count(record.sequence, "sequence"),
      offset: count(record.offset, "offset"), time };
    case "sync-refused": return { type: "sync-refused", code: text(record.code, "code"),
      reason: text(record.reason, "reason"), time };
    default: return undefined;
  }
}

export function digestsToBytes(digests: BigUint64Array): Uint8Array {
  const data = new Uint8Array(digests.length * 8);
  const view = new DataView(data.buffer);
  digests.forEach((digest, index) => view.setBigUint64(index * 8, digest, true));
  return data;
}

export function bytesToDigests(data: Uint8Array): BigUint64Array {
  if (data.length % 8 !== 0) fail("digests are not whole 64-bit words");
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  const digests = new BigUint64Array(data.length / 8);
  for (let index = 0; index < digests.length; index++) {
    digests[index] = view.getBigUint64(index * 8, true);
  }
  return digests;
}

export function indexesToBytes(indexes: readonly number[]): Uint8Array {
  const data = new Uint8Array(indexes.length * 4);
  const view = new DataView(data.buffer);
  indexes.forEach((index, at) => view.setUint32(at * 4, index, true));
  return data;
}

export function bytesToIndexes(data: Uint8Array): number[] {
  if (data.length % 4 !== 0) fail("block indexes are not whole 32-bit words");
  const view = new DataView(data.buffer, data.byteOffset, data.length);
  return Array.from({ length: data.length / 4 }, (_, at) => view.getUint32(at * 4, true));
}
