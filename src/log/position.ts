/** Positions in a resource's log, logfile names, and the version chain that links logfiles. */
import { assert } from "../lib/assert.ts";
import { sha256 } from "../platform/hash.ts";
import { isLogName } from "./format.ts";

/**
 * A byte position in the log: a logfile (by its sequence number) and an offset in it that is
 * always a record boundary. The primary's writeback position and a secondary's replay position
 * are both LogPositions: "every record before this has reached the disk durably".
 */
export interface LogPosition {
  readonly sequence: number;
  readonly offsetBytes: number;
}

export function comparePositions(left: LogPosition, right: LogPosition): number {
  return left.sequence !== right.sequence
    ? left.sequence - right.sequence
    : left.offsetBytes - right.offsetBytes;
}

export function positionText(position: LogPosition): string {
  return `${logfileSequenceText(position.sequence)}@${position.offsetBytes}`;
}

// --- logfile names: log-<sequence, 9 digits>-<origin host> ---

export const logfileNamePrefix = "log-";

function logfileSequenceText(sequence: number): string {
  return String(sequence).padStart(9, "0");
}

export function logfileName(sequence: number, origin: string): string {
  assert(Number.isSafeInteger(sequence) && sequence >= 1, "logfile sequence ≥ 1");
  assert(isLogName(origin), "origin host is a valid name");
  return `${logfileNamePrefix}${logfileSequenceText(sequence)}-${origin}`;
}

export function parseLogfileName(name: string): { sequence: number; origin: string } | undefined {
  const match = /^log-(\d{9,16})-(.+)$/.exec(name);
  if (!match || !isLogName(match[2]!)) return undefined;
  const sequence = Number(match[1]);
  if (!Number.isSafeInteger(sequence) || sequence < 1) return undefined;
  return { sequence, origin: match[2]! };
}

// --- the version chain ---

/** The previous digest of the first logfile of a history (create, invalidate, gap). */
export const chainStartDigest = new Uint8Array(32);
const chainDomain = new TextEncoder().encode("mars version chain 2\n");

export interface ChainLink {
  readonly sequence: number;
  readonly origin: string;
  /** Length of the finished logfile in bytes. */
  readonly lengthBytes: number;
  /** sha256 of the logfile's bytes [0, lengthBytes). */
  readonly contentDigest: Uint8Array;
  readonly previousDigest: Uint8Array;
}

/**
 * sha256 over (sequence, origin, length, content digest, previous digest). Two hosts with equal
 * chain digests for logfile N hold byte-identical histories up to the end of N.
 */
export function chainDigest(link: ChainLink): Uint8Array {
  assert(link.contentDigest.length === 32, "content digest is sha256");
  assert(link.previousDigest.length === 32, "previous digest is sha256");
  const origin = new TextEncoder().encode(link.origin);
  const fixed = new Uint8Array(17);
  const view = new DataView(fixed.buffer);
  view.setBigUint64(0, BigInt(link.sequence), true);
  view.setBigUint64(8, BigInt(link.lengthBytes), true);
  fixed[16] = origin.length;
  return sha256(chainDomain, fixed, origin, link.contentDigest, link.previousDigest);
}

export function digestText(digest: Uint8Array): string {
  return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export function sameDigest(left: Uint8Array, right: Uint8Array): boolean {
  return left.length === right.length && left.every((byte, index) => byte === right[index]);
}
