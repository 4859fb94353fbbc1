/** The sync cursor: how far a full sync got, persisted crash-safely so a restart resumes it. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { LogPosition } from "../log/position.ts";
import { decodeCbor, encodeCbor } from "../platform/cbor.ts";
import type { Storage } from "../platform/types.ts";
import { readFileBytes, writeFileAtomic } from "../store/atomic-file.ts";
import { rangeBytes, rangesValid, type ByteRange } from "./ranges.ts";

/** File name of the cursor in the resource's directory (docs/sync.md). */
export const syncCursorFileName = "sync-cursor";

/**
 * "copy": blocks below `copiedBytes` equal the source as of some moment after `startPosition`.
 * "replay": every block was copied; the replica is consistent once replay from `startPosition`
 * has reached `endPosition` (the source's log end when the copy finished).
 */
export interface SyncCursor {
  readonly phase: "copy" | "replay";
  /** The host whose device the sync reads. */
  readonly source: string;
  readonly sizeBytes: number;
  /** Where the catch-up replay starts: recorded before the first block was read. */
  readonly startPosition: LogPosition;
  readonly copiedBytes: number;
  /** Set in phase "replay": replay must reach this position before the replica is consistent. */
  readonly endPosition?: LogPosition;
  readonly startedMs: number;
  /**
   * A targeted sync (a split brain's repair) copies only these ranges; `copiedBytes` then
   * counts bytes of this list, not of the device. Absent: the whole device.
   */
  readonly ranges?: readonly ByteRange[];
}

/** Bytes the sync copies in all: the range list's, or the whole device's. */
export function cursorTotalBytes(cursor: SyncCursor): number {
  return cursor.ranges ? rangeBytes(cursor.ranges) : cursor.sizeBytes;
}

/** Where a cursor lives; the file store is the real one, tests may keep it in memory. */
export interface SyncCursorStore {
  load(): Promise<SyncCursor | undefined>;
  save(cursor: SyncCursor): Promise<void>;
  /** Forgets the cursor: the sync and its catch-up replay are done. */
  clear(): Promise<void>;
}

export function checkCursor(cursor: SyncCursor): void {
  assert(cursor.ranges === undefined || rangesValid(cursor.ranges, cursor.sizeBytes),
    "a targeted sync's ranges are sorted, disjoint, bounded and on the device");
  assert(cursor.copiedBytes >= 0 && cursor.copiedBytes <= cursorTotalBytes(cursor),
    "the sync cursor lies within the device");
  assert(cursor.phase === "copy" || cursor.copiedBytes === cursorTotalBytes(cursor),
    "the replay phase starts after every block was copied");
  assert(cursor.phase === "copy" || cursor.endPosition !== undefined,
    "the replay phase knows the position replay must reach");
}

function position(value: unknown): LogPosition {
  const record = value as Record<string, unknown> | undefined;
  const sequence = record?.sequence;
  const offsetBytes = record?.offsetBytes;
  if (!Number.isSafeInteger(sequence) || !Number.isSafeInteger(offsetBytes)) {
    throw new MarsError("io", "sync cursor holds a malformed log position");
  }
  return { sequence: sequence as number, offsetBytes: offsetBytes as number };
}

function parseRanges(value: unknown): ByteRange[] {
  if (!Array.isArray(value)) throw new MarsError("io", "sync cursor holds malformed ranges");
  return value.map((item: unknown) => {
    const range = item as Record<string, unknown> | undefined;
    const offsetBytes = range?.offsetBytes;
    const lengthBytes = range?.lengthBytes;
    if (!Number.isSafeInteger(offsetBytes) || !Number.isSafeInteger(lengthBytes)) {
      throw new MarsError("io", "sync cursor holds a malformed range");
    }
    return { offsetBytes: offsetBytes as number, lengthBytes: lengthBytes as number };
  });
}

export function parseCursor(value: unknown): SyncCursor {
  const record = value as Record<string, unknown>;
  if (typeof record !== "object" || record === null || record.format !== 1) {
    throw new MarsError("io", "sync cursor has an unknown format");
  }
  const phase = record.phase;
  if (phase !== "copy" && phase !== "replay") throw new MarsError("io", "sync cursor phase");
  const numbers = [record.sizeBytes, record.copiedBytes, record.startedMs];
  if (!numbers.every((item) => Number.isSafeInteger(item)) || typeof record.source !== "string") {
    throw new MarsError("io", "sync cursor holds malformed fields");
  }
  const cursor: SyncCursor = {
    phase, source: record.source, sizeBytes: record.sizeBytes as number,
    startPosition: position(record.startPosition), copiedBytes: record.copiedBytes as number,
    startedMs: record.startedMs as number,
    ...(record.endPosition === undefined ? {} : { endPosition: position(record.endPosition) }),
    ...(record.ranges === undefined ? {} : { ranges: parseRanges(record.ranges) }),
  };
  checkCursor(cursor);
  return cursor;
}

/** The cursor as a file beside the resource's logfiles, replaced atomically on every save. */
export function fileCursorStore(storage: Storage, directory: string): SyncCursorStore {
  const path = `${directory}/${syncCursorFileName}`;
  return {
    async load() {
      const bytes = await readFileBytes(storage, path);
      return bytes === undefined ? undefined : parseCursor(decodeCbor(bytes));
    },
    async save(cursor) {
      checkCursor(cursor);
      await writeFileAtomic(storage, path, encodeCbor({ format: 1, ...cursor }));
    },
    async clear() {
      await storage.files.remove(path);
      await storage.files.syncDirectory(directory);
    },
  };
}

/** A cursor kept in memory (tests, and the view of a sync that must not survive a restart). */
export function memoryCursorStore(): SyncCursorStore & { current: SyncCursor | undefined } {
  const store = {
    current: undefined as SyncCursor | undefined,
    async load() {
      return store.current;
    },
    async save(cursor: SyncCursor) {
      checkCursor(cursor);
      store.current = cursor;
    },
    async clear() {
      store.current = undefined;
    },
  };
  return store;
}
