/** Verifies a logfile or a resource's log directory: every record, sequences and the chain. */
import { MarsError } from "../lib/errors.ts";
import type { Storage } from "../platform/types.ts";
import {
  chainDigest, digestText, parseLogfileName, sameDigest,
} from "./position.ts";
import { defectiveLog, scanLogfile, type ScanResult } from "./reader.ts";

export interface VerifiedLogfile {
  readonly path: string;
  readonly scan: ScanResult;
  /** This file's link in the version chain. */
  readonly chainDigest: Uint8Array;
}

export interface VerifyReport {
  readonly logfiles: readonly VerifiedLogfile[];
}

/** The chain digest of a scanned logfile (over its verified length). */
export function chainDigestOf(scan: ScanResult): Uint8Array {
  return chainDigest({
    sequence: scan.header.sequence, origin: scan.header.origin, lengthBytes: scan.endOffset,
    contentDigest: scan.contentDigest, previousDigest: scan.header.previousDigest,
  });
}

/** Logfile names in `directory`, sorted by sequence. */
export async function listLogfiles(storage: Storage, directory: string) {
  const found = [];
  for (const name of await storage.files.list(directory)) {
    const parsed = parseLogfileName(name);
    if (parsed) found.push({ name, path: `${directory}/${name}`, ...parsed });
  }
  return found.sort((left, right) => left.sequence - right.sequence);
}

/**
 * Verifies one logfile on its own. A torn tail is reported as a defect too: a logfile at rest
 * has none (a clean close syncs everything; recovery truncates a crash's tail).
 */
export async function verifyLogfile(storage: Storage, path: string): Promise<VerifiedLogfile> {
  const scan = await scanLogfile(storage, path);
  if (scan.tornTail) {
    throw defectiveLog(path, scan.tornTail.offset,
      `${scan.tornTail.reason} (torn tail: an interrupted last write; recovery truncates it)`);
  }
  const named = parseLogfileName(path.slice(path.lastIndexOf("/") + 1));
  if (named && (named.sequence !== scan.header.sequence || named.origin !== scan.header.origin)) {
    throw defectiveLog(path, 0, `header says ${scan.header.sequence}/${scan.header.origin}, ` +
      `the name says ${named.sequence}/${named.origin}`);
  }
  return { path, scan, chainDigest: chainDigestOf(scan) };
}

/** Verifies every logfile of a directory and how they link: sequences, records, chain. */
export async function verifyLogDirectory(
  storage: Storage, directory: string,
): Promise<VerifyReport> {
  const listed = await listLogfiles(storage, directory);
  if (listed.length === 0) {
    throw new MarsError("not-found", `${directory}: no logfiles (log-NNNNNNNNN-HOST)`);
  }
  const logfiles: VerifiedLogfile[] = [];
  for (const entry of listed) {
    const verified = await verifyLogfile(storage, entry.path);
    const previous = logfiles.at(-1);
    if (previous) checkLink(previous, verified);
    logfiles.push(verified);
  }
  return { logfiles };
}

function checkLink(previous: VerifiedLogfile, next: VerifiedLogfile): void {
  const { header } = next.scan;
  if (header.sequence === previous.scan.header.sequence) {
    throw new MarsError("split-brain", `${next.path}: a second logfile with sequence ` +
      `${header.sequence} (${previous.path}): the histories diverged`);
  }
  if (header.sequence !== previous.scan.header.sequence + 1) {
    throw defectiveLog(next.path, 0, `logfile sequence ${header.sequence} follows ` +
      `${previous.scan.header.sequence}: a gap in the log`);
  }
  if (header.resource !== previous.scan.header.resource) {
    throw defectiveLog(next.path, 0, `resource ${header.resource}, ` +
      `expected ${previous.scan.header.resource}`);
  }
  if (header.firstRecordSequence !== previous.scan.lastRecordSequence + 1) {
    throw defectiveLog(next.path, 0, `first record ${header.firstRecordSequence} does not ` +
      `follow record ${previous.scan.lastRecordSequence} of ${previous.path}`);
  }
  if (!sameDigest(header.previousDigest, previous.chainDigest)) {
    throw defectiveLog(next.path, 168, `version chain broken: previous digest ` +
      `${digestText(header.previousDigest).slice(0, 16)}… but ${previous.path} chains to ` +
      `${digestText(previous.chainDigest).slice(0, 16)}…`);
  }
}
