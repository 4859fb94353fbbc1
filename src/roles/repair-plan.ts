/** A split brain's targeted repair: the blocks the loser's log names, and where replay restarts. */
import { assert } from "../lib/assert.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import {
  comparePositions, parseLogfileName, positionText, type LogPosition,
} from "../log/position.ts";
import { scanLogfile } from "../log/reader.ts";
import type { Storage } from "../platform/types.ts";
import { syncBlockBytes } from "../sync/chunk.ts";
import { mergeRanges, rangeBytes, syncRangesMax, type ByteRange } from "../sync/ranges.ts";
import { positionFileName, PositionStore } from "../translog/position-store.ts";

/** Ranges collected from records before they are merged (then merged again as they come). */
export const repairRawRangesMax = 4 * syncRangesMax;

/** What the repair does: copy `ranges` from the winner, then replay from `startPosition`. */
export interface TargetedRepair {
  readonly mode: "targeted";
  readonly startPosition: LogPosition;
  readonly ranges: readonly ByteRange[];
  readonly rangeBytes: number;
}

/** The repair falls back to the full fast sync, for `reason`. */
export interface FullRepair {
  readonly mode: "full";
  readonly reason: string;
}

export type RepairMode = TargetedRepair | FullRepair;

/** What a split-brain record publishes of the plan (the range list itself stays local). */
export type RepairSummary =
  | { readonly mode: "targeted"; readonly rangeCount: number; readonly rangeBytes: number;
    readonly startPosition: LogPosition }
  | FullRepair;

export function repairSummary(repair: RepairMode): RepairSummary {
  if (repair.mode === "full") return repair;
  return { mode: "targeted", rangeCount: repair.ranges.length, rangeBytes: repair.rangeBytes,
    startPosition: repair.startPosition };
}

/**
 * Plans the repair of this replica (docs/roles.md, "Repair"): its disk is the state at its
 * replay position P plus whatever records after P it applied. Every record at or after the
 * split point S in any logfile here (its own and its copies) may have changed a block that
 * the winner's history does not: those blocks are copied at the winner's current content.
 * Records before S are common history: replay restarts at min(P, S). The plan is only as
 * good as the logfiles here: when one that may have been applied is missing, or the list is
 * too scattered, it says "full".
 */
export async function planRepair(
  storage: Storage, directory: string, splitPoint: LogPosition, sizeBytes: number,
): Promise<RepairMode> {
  const replayed = await replayPosition(storage, directory);
  if (!replayed) return { mode: "full", reason: "no replay position here" };
  const startPosition = comparePositions(replayed, splitPoint) < 0 ? replayed : splitPoint;
  const logfiles = (await storage.files.list(directory))
    .map((name) => ({ name, parsed: parseLogfileName(name) }))
    .filter((entry) => entry.parsed !== undefined && entry.parsed.sequence >= splitPoint.sequence)
    .sort((left, right) => left.parsed!.sequence - right.parsed!.sequence);
  const sequences = new Set(logfiles.map((entry) => entry.parsed!.sequence));
  // The shared history from the replay start to the split point stays here, one logfile per
  // number (src/roles/common-logfiles.ts): the fetcher checks the winner's chain against it.
  const shared = new Map<number, number>();
  for (const name of await storage.files.list(directory)) {
    const parsed = parseLogfileName(name);
    if (parsed && parsed.sequence >= startPosition.sequence &&
      parsed.sequence <= splitPoint.sequence) {
      shared.set(parsed.sequence, (shared.get(parsed.sequence) ?? 0) + 1);
    }
  }
  for (let sequence = startPosition.sequence; sequence <= splitPoint.sequence; sequence++) {
    const count = shared.get(sequence) ?? 0;
    if (count !== 1) {
      return { mode: "full", reason: count === 0
        ? `logfile ${sequence} (shared history before the split) is not here`
        : `${count} logfiles numbered ${sequence} here` };
    }
  }
  const lastSequence = Math.max(replayed.sequence, ...sequences);
  for (let sequence = splitPoint.sequence; sequence <= lastSequence; sequence++) {
    // A gap after the split: retention may have deleted a logfile whose records were applied
    // (written back beyond the persisted position, or replayed): its blocks cannot be named.
    // The newest logfile is never deleted, so none after the last one here was applied.
    if (!sequences.has(sequence)) {
      return { mode: "full", reason: `logfile ${sequence} after the split is not here` };
    }
  }
  let ranges: ByteRange[] = [];
  let pending: ByteRange[] = [];
  for (const { name, parsed } of logfiles) {
    const fromOffset = parsed!.sequence === splitPoint.sequence
      ? splitPoint.offsetBytes : logfileHeaderBytes;
    await scanLogfile(storage, `${directory}/${name}`, {
      fromOffset,
      onRecord: ({ header }) => {
        if (header.kind === "gap" || header.lengthBytes === 0) return;
        pending.push({ offsetBytes: header.deviceOffset, lengthBytes: header.lengthBytes });
        if (pending.length >= repairRawRangesMax) {
          ranges = mergeRanges([...ranges, ...pending], syncBlockBytes, sizeBytes);
          pending = [];
        }
      },
    });
    if (ranges.length > syncRangesMax) break;
  }
  ranges = mergeRanges([...ranges, ...pending], syncBlockBytes, sizeBytes);
  if (ranges.length > syncRangesMax) {
    return { mode: "full", reason: `the log after the split names more than ${syncRangesMax} ` +
      "separate ranges" };
  }
  assert(comparePositions(startPosition, splitPoint) <= 0, "replay restarts at or before S");
  return { mode: "targeted", startPosition, ranges, rangeBytes: rangeBytes(ranges) };
}

/** The persisted replay (or writeback) position of the replica in `directory`, if any. */
async function replayPosition(
  storage: Storage, directory: string,
): Promise<LogPosition | undefined> {
  if (!(await storage.files.status(`${directory}/${positionFileName}`))) return undefined;
  const store = await PositionStore.open(storage, directory);
  try {
    return store.current;
  } finally {
    await store.close();
  }
}

/** One line for `view` and `invalidate --dry-run`. */
export function repairText(repair: RepairSummary | undefined | null): string {
  if (!repair) return "repair not planned";
  if (repair.mode === "full") return `full fast sync (${repair.reason})`;
  return `targeted: ${repair.rangeCount} ranges, ${repair.rangeBytes} bytes compared, ` +
    `then replay from ${positionText(repair.startPosition)}`;
}
