/** A secondary's copies of logfiles: loading them after a crash, creating, cutting them. */
import { isMarsError } from "../lib/errors.ts";
import { decodeLogfileHeader, logfileHeaderBytes } from "../log/format.ts";
import { digestText, sameDigest } from "../log/position.ts";
import { scanLogfile } from "../log/reader.ts";
import type { Storage } from "../platform/types.ts";
import { readFileBytes, writeFileAtomic } from "../store/atomic-file.ts";
import {
  chainDigestOfFile, localLogfiles, logfilePath, type LocalLogfile,
} from "./log-files.ts";

export interface LocalCopy extends LocalLogfile {
  /** Bytes written and fdatasync'ed here. */
  syncedBytes: number;
  /** Set once the source said the file ends here and every byte is synced. */
  finished: boolean;
  chainDigest?: Uint8Array;
}

/**
 * Names the newest copy the source said was finished (sequence, origin, length, chain digest):
 * after a restart the fetcher asks for the next logfile instead of this one, which its source
 * may have deleted since (docs/replication.md, "Resuming").
 */
export const finishedCopyFileName = "fetched-finished";

interface FinishedCopyRecord {
  readonly sequence: number;
  readonly origin: string;
  readonly lengthBytes: number;
  readonly chainDigest: string;
}

/**
 * The copies in `directory`, oldest first. Every copy but the newest is finished (a new one is
 * created only after its predecessor is complete). The newest is finished too when the record
 * of the last finished copy names it and its bytes still end that chain. Otherwise it may end
 * in bytes written after the last fdatasync before a crash: it is cut back to its last valid
 * record (or removed when not even its header is valid) and fetched again from there.
 */
export async function loadLocalCopies(storage: Storage, directory: string) {
  const listed = [...(await localLogfiles(storage, directory)).values()]
    .sort((left, right) => left.sequence - right.sequence);
  const copies: LocalCopy[] = [];
  for (const [index, file] of listed.entries()) {
    const status = await storage.files.status(file.path);
    const newest = index === listed.length - 1;
    const copy: LocalCopy = { ...file, syncedBytes: status?.sizeBytes ?? 0, finished: !newest };
    if (newest && !(await finishedAsRecorded(storage, directory, copy)) &&
      !(await trimNewest(storage, copy))) continue;
    copies.push(copy);
  }
  return copies;
}

/**
 * Phase "finish", made durable: the chain digest of the finished `copy` (the next logfile's
 * header is checked against it, even once log lifetime deleted this copy) and the record
 * naming it as the newest finished copy here.
 */
export async function recordFinished(
  storage: Storage, directory: string, copy: LocalCopy,
): Promise<void> {
  copy.chainDigest ??= await chainDigestOfFile(storage, copy.path, copy.syncedBytes);
  const record: FinishedCopyRecord = {
    sequence: copy.sequence, origin: copy.origin, lengthBytes: copy.syncedBytes,
    chainDigest: digestText(copy.chainDigest),
  };
  const bytes = new TextEncoder().encode(JSON.stringify(record));
  await writeFileAtomic(storage, `${directory}/${finishedCopyFileName}`, bytes);
}

/** Marks `copy` finished when the record names it and its bytes still end the same chain. */
async function finishedAsRecorded(
  storage: Storage, directory: string, copy: LocalCopy,
): Promise<boolean> {
  let record: Partial<FinishedCopyRecord>;
  try {
    const bytes = await readFileBytes(storage, `${directory}/${finishedCopyFileName}`);
    if (!bytes) return false;
    record = JSON.parse(new TextDecoder().decode(bytes)) as Partial<FinishedCopyRecord>;
  } catch {
    return false; // unreadable: the copy is treated as unfinished, as without a record
  }
  if (record.sequence !== copy.sequence || record.origin !== copy.origin ||
    record.lengthBytes !== copy.syncedBytes || copy.syncedBytes < logfileHeaderBytes) {
    return false;
  }
  let digest: Uint8Array;
  try {
    digest = await chainDigestOfFile(storage, copy.path, copy.syncedBytes);
  } catch (error) {
    if (!isMarsError(error) || error.code !== "defective-log") throw error;
    return false;
  }
  if (digestText(digest) !== record.chainDigest) return false;
  copy.finished = true;
  copy.chainDigest = digest;
  return true;
}

/** Cuts a damaged tail; false when the copy was removed. */
async function trimNewest(storage: Storage, copy: LocalCopy): Promise<boolean> {
  let keep = copy.syncedBytes;
  try {
    const scan = await scanLogfile(storage, copy.path);
    keep = scan.tornTail ? scan.tornTail.offset : scan.endOffset;
  } catch (error) {
    if (!isMarsError(error) || error.code !== "defective-log") throw error;
    const details = error.details as { offset?: number; headerProblem?: boolean } | undefined;
    keep = details?.headerProblem ? 0 : details?.offset ?? 0;
  }
  if (keep < logfileHeaderBytes) {
    await storage.files.remove(copy.path);
    return false;
  }
  if (keep < copy.syncedBytes) await truncateCopy(storage, copy, keep);
  return true;
}

/** Cuts `copy` to `lengthBytes`, durably. */
export async function truncateCopy(
  storage: Storage, copy: LocalCopy, lengthBytes: number,
): Promise<void> {
  const { files, io } = storage;
  const fd = await files.open(copy.path, {});
  try {
    await files.truncate(fd, lengthBytes);
    await io.submit([{ kind: "fsync", fd, dataOnly: false }]);
  } finally {
    await files.close(fd);
  }
  copy.syncedBytes = lengthBytes;
}

/**
 * Phase "create": an empty copy of logfile `sequence`, made durable (file, directory), once its
 * first bytes (`start`, at least the header) arrived and its header continues the local chain:
 * it must name the chain digest of `previous`, the copy of the logfile before it. Returns the
 * split-brain reason instead when it does not; nothing is written then.
 */
export async function createCopy(
  storage: Storage, directory: string, resource: string, sequence: number, start: Uint8Array,
  previous: LocalCopy | undefined,
): Promise<LocalCopy | string> {
  const header = decodeLogfileHeader(start.subarray(0, logfileHeaderBytes));
  if (typeof header === "string" || header.sequence !== sequence ||
    header.resource !== resource) {
    return `logfile ${sequence} from the source has a bad header`;
  }
  if (previous) {
    previous.chainDigest ??= await chainDigestOfFile(storage, previous.path,
      previous.syncedBytes);
    if (!sameDigest(previous.chainDigest, header.previousDigest)) {
      return `logfile ${sequence} (${header.origin}) continues chain ` +
        `${digestText(header.previousDigest).slice(0, 16)}, but logfile ${sequence - 1} ` +
        `here ends chain ${digestText(previous.chainDigest).slice(0, 16)}`;
    }
  }
  const path = logfilePath(directory, sequence, header.origin);
  const { files, io } = storage;
  await files.makeDirectory(directory);
  const fd = await files.open(path, { create: true, exclusive: true });
  try {
    await io.submit([{ kind: "fsync", fd, dataOnly: false }]);
  } finally {
    await files.close(fd);
  }
  await files.syncDirectory(directory);
  return { sequence, origin: header.origin, path, syncedBytes: 0, finished: false };
}

export function joinBytes(items: readonly { bytes: Uint8Array }[]): Uint8Array {
  const total = items.reduce((sum, item) => sum + item.bytes.length, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const item of items) {
    joined.set(item.bytes, offset);
    offset += item.bytes.length;
  }
  return joined;
}

/** The last `limit` bytes of `earlier` followed by `later`. */
export function lastBytes(earlier: Uint8Array, later: Uint8Array, limit: number): Uint8Array {
  if (later.length >= limit) return later.slice(later.length - limit);
  const keep = Math.min(earlier.length, limit - later.length);
  const joined = new Uint8Array(keep + later.length);
  joined.set(earlier.subarray(earlier.length - keep));
  joined.set(later, keep);
  return joined;
}
