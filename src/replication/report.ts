/** What each host publishes about its replication of a resource, and how readers judge it. */
import { comparePositions, type LogPosition } from "../log/position.ts";

/**
 * The replica's state as `view` shows it. The sync and log-lifetime code drive the ones this
 * module never sets by itself: "syncing" (full sync running, inconsistent) and "emergency".
 */
export type ReplicaStatus =
  | "primary"       // this host writes the log
  | "replaying"     // fetching and/or applying, behind the source
  | "caught-up"     // everything fetched is applied
  | "paused"        // replay switched off (fetching may go on: see fetchState)
  | "repairing"     // a damaged local copy is being fetched again
  | "defective"     // replay stopped before a record that fails verification
  | "split-brain"   // the histories diverged; nothing past the split point is fetched
  | "syncing"       // a full sync is running (inconsistent until it and its replay finish)
  | "emergency"     // the log has a gap (primary in emergency mode): consistent but outdated
  | "failed";       // an operating error (disk, peer) stopped replication; see `problem`

/** Value of key resource/R/replication/HOST (docs/replication.md). */
export interface ReplicationReport {
  readonly status: ReplicaStatus;
  /** The disk equals the primary's device at some point of the log (anytime consistency). */
  readonly consistent: boolean;
  /** Primary: the end of the log (records appended). Secondary: the source's durable end. */
  readonly logEnd: LogPosition | null;
  /** Secondary: durable here (fetched). Primary: durable in the log. */
  readonly fetched: LogPosition | null;
  /** Secondary: applied to the disk, flushed and persisted. Primary: written back. */
  readonly replayed: LogPosition | null;
  readonly fetchLagBytes: number;
  readonly replayLagBytes: number;
  /** Bytes per second over the last sampling interval. */
  readonly fetchRateBytesPerSecond: number;
  readonly replayRateBytesPerSecond: number;
  /** Primary only: log bytes written per second. */
  readonly writeRateBytesPerSecond: number;
  /** The peer logs are fetched from. */
  readonly source: string | null;
  readonly fetchState: string;
  readonly replayState: string;
  /** The defective record, when replay stopped at one. */
  readonly defect: { readonly file: string; readonly offset: number; readonly reason: string }
    | null;
  /** Why the status is what it is (split brain details, refusals, I/O errors). */
  readonly problem: string | null;
  /** Filled by the full sync (null while none runs). */
  readonly syncPercent: number | null;
  readonly syncEtaSeconds: number | null;
  readonly emergency: boolean;
  /** Wall-clock time of this report (for people: how fresh it is). */
  readonly reportedMs: number;
}

/** Seconds a lag takes to drain at `rate`; 0 without lag, null when nothing moves. */
export function lagSeconds(lagBytes: number, rateBytesPerSecond: number): number | null {
  if (lagBytes <= 0) return 0;
  if (rateBytesPerSecond <= 0) return null;
  return Math.round((lagBytes / rateBytesPerSecond) * 10) / 10;
}

/** Whether a replica has replayed at least to `target` and is consistent and healthy. */
export function replicaReached(report: ReplicationReport, target: LogPosition): boolean {
  if (!report.consistent || report.replayed === null) return false;
  if (report.status === "defective" || report.status === "split-brain") return false;
  return comparePositions(report.replayed, target) >= 0;
}

/** Error code a waiting command ends with for a report in a terminal state, else undefined. */
export function terminalCode(report: ReplicationReport) {
  if (report.status === "split-brain") return "split-brain" as const;
  if (report.status === "emergency" || report.emergency) return "emergency" as const;
  if (report.status === "defective") return "defective-log" as const;
  return undefined;
}

/** Reads a published value defensively (older engines, foreign hosts). */
export function asReport(value: unknown): ReplicationReport | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const record = value as Partial<ReplicationReport>;
  return typeof record.status === "string" ? (value as ReplicationReport) : undefined;
}
