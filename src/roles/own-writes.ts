/** What one host wrote to the log after a split point, counted from its own logfiles. */
import { logfileHeaderBytes } from "../log/format.ts";
import { parseLogfileName, type LogPosition } from "../log/position.ts";
import { scanLogfile } from "../log/reader.ts";
import type { Storage } from "../platform/types.ts";

/** A host's own log after a split point. */
export interface OwnWrites {
  /** Where its own logfiles end. */
  readonly end: LogPosition;
  /** Log bytes and records after the split point; null when one of its logfiles is gone. */
  readonly bytesAfter: number | null;
  readonly recordsAfter: number | null;
}

/**
 * One logfile's count, reused while the file keeps its size and modification time (finished
 * logfiles never change; the live one is preallocated, so its size alone says nothing).
 */
export interface CountedLogfile {
  readonly sizeBytes: number;
  readonly modifiedMs: number;
  readonly fromOffset: number;
  readonly endOffset: number;
  readonly records: number;
}

/** Counts per logfile name; pass the same map again to skip logfiles already counted. */
export type OwnWritesCache = Map<string, CountedLogfile>;

/**
 * Scans `origin`'s logfiles in `directory` from the split point on: the one holding the split
 * point from its offset, later ones from their first record. The counts are known only when
 * these logfiles follow each other without a gap from the split point's logfile (or the next
 * one: a primary that continued another host's history starts its own at the next number).
 * Undefined when `origin` wrote no logfile from there.
 */
export async function ownWritesAfter(
  storage: Storage, directory: string, origin: string, splitPoint: LogPosition,
  cache: OwnWritesCache = new Map(),
): Promise<OwnWrites | undefined> {
  const own = (await storage.files.list(directory))
    .map((name) => ({ name, parsed: parseLogfileName(name) }))
    .flatMap(({ name, parsed }) => parsed && parsed.origin === origin &&
      parsed.sequence >= splitPoint.sequence ? [{ name, sequence: parsed.sequence }] : [])
    .sort((left, right) => left.sequence - right.sequence);
  if (own.length === 0) return undefined;
  let complete = own[0]!.sequence <= splitPoint.sequence + 1;
  let bytes = 0;
  let records = 0;
  let end: LogPosition | undefined;
  for (const [index, { name, sequence }] of own.entries()) {
    if (index > 0 && sequence !== own[index - 1]!.sequence + 1) complete = false;
    const fromOffset = sequence === splitPoint.sequence
      ? splitPoint.offsetBytes : logfileHeaderBytes;
    const counted = await countLogfile(storage, `${directory}/${name}`, fromOffset,
      cache.get(name));
    if (!counted) {
      complete = false; // removed while we looked
      continue;
    }
    cache.set(name, counted);
    bytes += Math.max(0, counted.endOffset - fromOffset);
    records += counted.records;
    end = { sequence, offsetBytes: counted.endOffset };
  }
  if (!end) return undefined;
  return { end, bytesAfter: complete ? bytes : null, recordsAfter: complete ? records : null };
}

async function countLogfile(
  storage: Storage, path: string, fromOffset: number, cached: CountedLogfile | undefined,
): Promise<CountedLogfile | undefined> {
  const status = await storage.files.status(path);
  if (!status) return undefined;
  if (cached && cached.sizeBytes === status.sizeBytes &&
    cached.modifiedMs === status.modifiedMs && cached.fromOffset === fromOffset) return cached;
  let records = 0;
  const scan = await scanLogfile(storage, path, { fromOffset, onRecord: () => void records++ });
  return {
    sizeBytes: status.sizeBytes, modifiedMs: status.modifiedMs, fromOffset,
    endOffset: scan.endOffset, records,
  };
}
