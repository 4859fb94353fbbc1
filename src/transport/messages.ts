/** The peer protocol's messages, and strict checks of everything that arrives from the wire. */
import { MarsError } from "../lib/errors.ts";
import { batchEntriesMax, type Batch } from "../cluster/sync.ts";
import type { WireEntry } from "../cluster/metadata-map.ts";
import { parseSyncMessage, type SyncMessage } from "../sync/wire.ts";

export const protocolVersion = 1;
export const nonceBytes = 32;
export const proofBytes = 32;
/**
 * Channel kinds get separate connections, so bulk traffic never queues behind metadata: the
 * metadata channel carries the map, "log" streams logfiles (src/replication), "sync" carries
 * the full sync (src/sync).
 */
export const channelKinds = ["metadata", "join", "log", "sync"] as const;
export type ChannelKind = (typeof channelKinds)[number];

export type Message =
  | { type: "hello"; protocol: number; cluster: string; host: string; channel: ChannelKind;
      nonce: Uint8Array; time: number }
  | { type: "challenge"; nonce: Uint8Array; time: number }
  | { type: "proof"; proof: Uint8Array; time: number }
  | { type: "welcome"; host: string; proof: Uint8Array; time: number }
  | { type: "refusal"; reason: string; code: string; time: number }
  | { type: "pull"; incarnation: string; afterSeq: number; time: number }
  | { type: "batch"; batch: Batch; time: number }
  | { type: "heartbeat"; time: number }
  | { type: "join"; host: string; address: string; time: number }
  | { type: "joined"; time: number }
  // --- the "log" channel (src/replication, docs/replication.md) ---
  | { type: "log-fetch"; resource: string; sequence: number; origin: string; offset: number;
      tail: Uint8Array; verify: boolean; windowBytes: number; time: number }
  | { type: "log-ack"; bytes: number; time: number }
  | { type: "log-data"; sequence: number; offset: number; compressed: boolean;
      bytes: Uint8Array; rawBytes: number; checksum: number; time: number }
  | { type: "log-finished"; sequence: number; lengthBytes: number; time: number }
  | { type: "log-status"; sequence: number; durableOffset: number; pendingBytes: number;
      time: number }
  // --- the "sync" channel (src/sync, docs/sync.md) ---
  | SyncMessage;

/** Bytes of its copy just before the resume offset a fetcher sends, to be compared. */
export const logTailBytesMax = 4096;
/** Logfile bytes one "log-data" frame carries (before compression). */
export const logChunkBytesMax = 256 * 1024;
/** zstd may grow incompressible input a little; a stored chunk is never larger than this. */
const logChunkStoredBytesMax = logChunkBytesMax + 4096;

const stringBytesMax = 1024;

function fail(what: string): never {
  throw new MarsError("protocol", `malformed message: ${what}`);
}

function text(value: unknown, what: string): string {
  if (typeof value !== "string" || value.length > stringBytesMax) fail(`${what} is not a string`);
  return value;
}

function count(value: unknown, what: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < 0) {
    fail(`${what} is not a count`);
  }
  return value;
}

function bytes(value: unknown, length: number, what: string): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length !== length) {
    fail(`${what} is not ${length} bytes`);
  }
  return value;
}

function entry(value: unknown): WireEntry {
  if (typeof value !== "object" || value === null) fail("entry is not a map");
  const record = value as Record<string, unknown>;
  const deleted = record.deleted === true;
  if (!deleted && record.value === undefined) fail("entry has neither value nor deleted");
  return {
    key: text(record.key, "entry key"), time: count(record.time, "entry time"),
    host: text(record.host, "entry host"), seq: count(record.seq, "entry seq"),
    ...(deleted ? { deleted: true } : { value: record.value }),
  };
}

function batch(value: unknown): Batch {
  if (typeof value !== "object" || value === null) fail("batch is not a map");
  const record = value as Record<string, unknown>;
  const entries = record.entries;
  if (!Array.isArray(entries) || entries.length > batchEntriesMax) fail("batch entries");
  const parsed: Batch = {
    incarnation: text(record.incarnation, "incarnation"),
    fromSeq: count(record.fromSeq, "fromSeq"), throughSeq: count(record.throughSeq, "throughSeq"),
    seqHigh: count(record.seqHigh, "seqHigh"), time: count(record.time, "batch time"),
    entries: entries.map(entry),
  };
  if (parsed.fromSeq > parsed.throughSeq) fail("batch range is reversed");
  for (const item of parsed.entries) {
    if (item.seq <= parsed.fromSeq || item.seq > parsed.throughSeq) fail("entry outside batch");
  }
  return parsed;
}

function logTail(value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array) || value.length > logTailBytesMax) fail("log tail");
  return value;
}

function logData(record: Record<string, unknown>, time: number): Message {
  const stored = record.bytes;
  if (!(stored instanceof Uint8Array) || stored.length > logChunkStoredBytesMax) {
    fail("log data bytes");
  }
  const rawBytes = count(record.rawBytes, "rawBytes");
  if (rawBytes === 0 || rawBytes > logChunkBytesMax) fail("log data length");
  const compressed = record.compressed === true;
  if (!compressed && stored.length !== rawBytes) fail("uncompressed log data length");
  const checksum = count(record.checksum, "checksum");
  if (checksum > 0xffff_ffff) fail("log data checksum");
  return {
    type: "log-data", sequence: count(record.sequence, "sequence"),
    offset: count(record.offset, "offset"), compressed, bytes: stored, rawBytes, checksum, time,
  };
}

/** Checks a decoded frame and returns it typed; anything unexpected is a protocol error. */
export function parseMessage(value: unknown): Message {
  if (typeof value !== "object" || value === null) fail("not a map");
  const record = value as Record<string, unknown>;
  const time = count(record.time, "time");
  switch (record.type) {
    case "hello": {
      const channel = text(record.channel, "channel");
      if (!(channelKinds as readonly string[]).includes(channel)) fail(`channel '${channel}'`);
      return {
        type: "hello", protocol: count(record.protocol, "protocol"),
        cluster: text(record.cluster, "cluster"), host: text(record.host, "host"),
        channel: channel as ChannelKind, nonce: bytes(record.nonce, nonceBytes, "nonce"), time,
      };
    }
    case "challenge": return { type: "challenge", nonce: bytes(record.nonce, nonceBytes, "nonce"),
      time };
    case "proof": return { type: "proof", proof: bytes(record.proof, proofBytes, "proof"), time };
    case "welcome": return { type: "welcome", host: text(record.host, "host"),
      proof: bytes(record.proof, proofBytes, "proof"), time };
    case "refusal": return { type: "refusal", reason: text(record.reason, "reason"),
      code: text(record.code, "code"), time };
    case "pull": return { type: "pull", incarnation: text(record.incarnation, "incarnation"),
      afterSeq: count(record.afterSeq, "afterSeq"), time };
    case "batch": return { type: "batch", batch: batch(record.batch), time };
    case "heartbeat": return { type: "heartbeat", time };
    case "join": return { type: "join", host: text(record.host, "host"),
      address: text(record.address, "address"), time };
    case "joined": return { type: "joined", time };
    case "log-fetch": return { type: "log-fetch", resource: text(record.resource, "resource"),
      sequence: count(record.sequence, "sequence"), origin: text(record.origin, "origin"),
      offset: count(record.offset, "offset"), tail: logTail(record.tail),
      verify: record.verify === true,
      // Bytes the fetcher lets be in flight (a rate-limited one asks for less); 0 = default.
      windowBytes: record.windowBytes === undefined ? 0 : count(record.windowBytes, "windowBytes"),
      time };
    case "log-ack": return { type: "log-ack", bytes: count(record.bytes, "bytes"), time };
    case "log-data": return logData(record, time);
    case "log-finished": return { type: "log-finished", sequence: count(record.sequence,
      "sequence"), lengthBytes: count(record.lengthBytes, "lengthBytes"), time };
    case "log-status": return { type: "log-status", sequence: count(record.sequence, "sequence"),
      durableOffset: count(record.durableOffset, "durableOffset"),
      pendingBytes: count(record.pendingBytes, "pendingBytes"), time };
    default: {
      const sync = parseSyncMessage(record, time);
      if (sync) return sync;
      fail(`unknown type '${String(record.type)}'`);
    }
  }
}
