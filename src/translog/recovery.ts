/** Start-up recovery: replay the log from the writeback position, cut a torn tail, then serve. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { Storage } from "../platform/types.ts";
import type { BlockDevice } from "../block/types.ts";
import { ParallelApplier } from "../log/apply.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import { chainStartDigest, positionText, type LogPosition } from "../log/position.ts";
import { defectiveLog, scanLogfile, type ScanResult } from "../log/reader.ts";
import { chainDigestOf, listLogfiles } from "../log/verify.ts";
import type { LogStart } from "../log/writer.ts";

export interface RecoveryResult {
  /** Where the new writer starts: the next logfile of the chain. */
  readonly start: LogStart;
  /** Every record before this is on the backing disk, durably. */
  readonly position: LogPosition | undefined;
  readonly recordsReplayed: number;
  /** Set when a torn tail was cut off the last logfile. */
  readonly truncated?: { readonly path: string; readonly offset: number; readonly reason: string };
}

/**
 * phase0Recover: applies every record from `from` (or from the first logfile when undefined)
 * to `backing` in log order, then flushes it. Only the last logfile may end in a torn tail; it
 * is truncated durably. A logfile left with a torn header by a crash during its creation holds
 * nothing acknowledged and is removed.
 */
export async function recoverLog(
  storage: Storage, directory: string, backing: BlockDevice, from: LogPosition | undefined,
): Promise<RecoveryResult> {
  let listed = await listLogfiles(storage, directory);
  const last = listed.at(-1);
  if (last && (await removeTornHeader(storage, directory, last.path))) listed = listed.slice(0, -1);
  if (listed.length === 0) return emptyLog(last?.sequence ?? 1);
  const first = listed[0]!;
  const position = from ?? { sequence: first.sequence, offsetBytes: logfileHeaderBytes };
  if (!listed.some((entry) => entry.sequence === position.sequence)) {
    throw new MarsError("defective-log",
      `${directory}: the writeback position ${positionText(position)} names a missing logfile`);
  }
  const applier = new ParallelApplier(backing);
  let scan: ScanResult | undefined;
  for (const [index, entry] of listed.entries()) {
    const isLast = index === listed.length - 1;
    if (entry.sequence < position.sequence && !isLast) continue;
    const fromOffset = entry.sequence === position.sequence ? position.offsetBytes : 0;
    const replaying = entry.sequence >= position.sequence;
    scan = await scanLogfile(storage, entry.path, {
      fromOffset,
      onRecord: async (record) => {
        if (replaying) await applier.apply(record);
      },
    });
    if (scan.tornTail && !isLast) {
      throw defectiveLog(entry.path, scan.tornTail.offset,
        `${scan.tornTail.reason} (not the last logfile, so this cannot be a torn tail)`);
    }
    if (entry.sequence === position.sequence && position.offsetBytes > scan.endOffset) {
      throw defectiveLog(entry.path, scan.endOffset, `the log ends before the writeback ` +
        `position ${positionText(position)}: records known to be durable are missing`);
    }
  }
  await applier.drain();
  const recordsReplayed = applier.applied;
  assert(scan !== undefined, "the last logfile was scanned");
  const truncated = scan.endOffset < scan.fileSizeBytes ? await cutTail(storage, scan) : undefined;
  await backing.flush();
  const end = { sequence: scan.header.sequence, offsetBytes: scan.endOffset };
  return {
    start: {
      logfileSequence: scan.header.sequence + 1,
      firstRecordSequence: scan.lastRecordSequence + 1,
      previousDigest: chainDigestOf(scan),
      stampFloor: scan.lastStamp,
    },
    position: end, recordsReplayed, ...(truncated ? { truncated } : {}),
  };
}

function emptyLog(sequence: number): RecoveryResult {
  return {
    start: {
      logfileSequence: sequence, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0,
    },
    position: undefined, recordsReplayed: 0,
  };
}

/** A last logfile whose header never became durable held no records yet; remove it. */
async function removeTornHeader(storage: Storage, directory: string, path: string) {
  const status = await storage.files.status(path);
  if (!status || status.sizeBytes > logfileHeaderBytes) return false;
  try {
    await scanLogfile(storage, path);
    return false;
  } catch (error) {
    if (!(error instanceof MarsError) || error.details.headerProblem !== true) throw error;
  }
  await storage.files.remove(path);
  await storage.files.syncDirectory(directory);
  return true;
}

/** Cuts a torn tail or preallocated zeroes off the last logfile, durably. */
async function cutTail(storage: Storage, scan: ScanResult) {
  assert(scan.endOffset < scan.fileSizeBytes, "there is a tail to cut");
  const fd = await storage.files.open(scan.path, {});
  try {
    await storage.files.truncate(fd, scan.endOffset);
    const [result] = await storage.io.submit([{ kind: "fsync", fd, dataOnly: false }]);
    if (!result?.ok) {
      throw new MarsError("io", `${scan.path}: fsync after truncation failed`, {
        details: { file: scan.path },
      });
    }
  } finally {
    await storage.files.close(fd);
  }
  const reason = scan.tornTail?.reason ?? "preallocated space";
  return { path: scan.path, offset: scan.endOffset, reason };
}
