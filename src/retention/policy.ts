/** Which logfiles may go, and which members lose their claim on them (pure decisions). */
import { assert } from "../lib/assert.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";

/** How far behind a member may fall before it stops holding logfiles for everyone. */
export interface RetentionLimits {
  /** Log bytes a member may still need to replay. */
  readonly lagBytesMax: number;
  /** Age of the oldest logfile a member still needs. */
  readonly lagAgeMsMax: number;
}

/** Defaults (docs/log-lifetime.md): 64 GiB or three days of backlog. */
export const defaultRetentionLimits: RetentionLimits = {
  lagBytesMax: 64 * 1024 * 1024 * 1024,
  lagAgeMsMax: 3 * 24 * 60 * 60 * 1000,
};

/** Logfiles a decision considers at once (one resource's directory). */
export const retentionLogfilesMax = 1 << 20;

export interface LogfileFact {
  readonly sequence: number;
  readonly lengthBytes: number;
  /** When its first record was written (the header's createdMs). */
  readonly createdMs: number;
}

export interface MemberFact {
  readonly host: string;
  /**
   * Where this member's disk stands in the log: a secondary's replay position, the primary's
   * writeback position, a syncing member's catch-up start. Undefined: it holds nothing (it
   * has not started, or it was dropped and waits for a sync).
   */
  readonly position: LogPosition | undefined;
}

export interface RetentionDecision {
  /** Logfiles every holding member has replayed entirely; oldest first. */
  readonly deletable: readonly number[];
  /** Members that lag beyond the limits: they no longer hold logfiles and need a sync. */
  readonly dropped: readonly { host: string; reason: string }[];
}

/** True when `position` lies past every byte of logfile `file` (so it needs it no more). */
function passed(position: LogPosition, file: LogfileFact): boolean {
  return position.sequence > file.sequence ||
    (position.sequence === file.sequence && position.offsetBytes >= file.lengthBytes);
}

/** Bytes of the log from `position` to the end, and when the oldest needed logfile began. */
export function lagOf(position: LogPosition, logfiles: readonly LogfileFact[]) {
  let lagBytes = 0;
  let oldestNeededMs: number | undefined;
  for (const file of logfiles) {
    if (passed(position, file)) continue;
    const from = file.sequence === position.sequence ? position.offsetBytes : 0;
    lagBytes += Math.max(0, file.lengthBytes - from);
    oldestNeededMs ??= file.createdMs;
  }
  return { lagBytes, oldestNeededMs };
}

/**
 * Decides over one resource's logfiles (sorted by sequence; the last one is being written and
 * is never deletable) and its members' positions.
 */
export function decideRetention(
  logfiles: readonly LogfileFact[], members: readonly MemberFact[], nowMs: number,
  limits: RetentionLimits = defaultRetentionLimits,
): RetentionDecision {
  assert(logfiles.length <= retentionLogfilesMax, "logfiles per decision within bound");
  for (let index = 1; index < logfiles.length; index++) {
    assert(logfiles[index - 1]!.sequence < logfiles[index]!.sequence, "logfiles are sorted");
  }
  const dropped: { host: string; reason: string }[] = [];
  const holders: LogPosition[] = [];
  for (const member of members) {
    if (member.position === undefined) continue;
    const { lagBytes, oldestNeededMs } = lagOf(member.position, logfiles);
    const ageMs = oldestNeededMs === undefined ? 0 : nowMs - oldestNeededMs;
    if (lagBytes > limits.lagBytesMax) {
      dropped.push({ host: member.host, reason: `lags ${lagBytes} bytes` });
    } else if (ageMs > limits.lagAgeMsMax) {
      dropped.push({ host: member.host, reason: `lags ${Math.round(ageMs / 1000)} s` });
    } else holders.push(member.position);
  }
  const deletable: number[] = [];
  for (const file of logfiles.slice(0, -1)) {
    // A holder exactly at a logfile's end still resumes its fetch there (a former primary
    // after a handover has no later copy yet): the logfile goes once it is in a later one.
    if (!holders.every((position) => position.sequence > file.sequence)) break;
    deletable.push(file.sequence);
  }
  return { deletable, dropped };
}

/**
 * Under space pressure a secondary keeps only what its own replay still needs: others can
 * fetch from the origin. Returns the logfiles this host may delete, oldest first.
 */
export function trimmable(
  logfiles: readonly LogfileFact[], ownPosition: LogPosition | undefined,
): number[] {
  if (ownPosition === undefined) return [];
  const found: number[] = [];
  for (const file of logfiles.slice(0, -1)) {
    // At a logfile's very end the replay moves on from this copy (and a restart resumes the
    // fetch there): like decideRetention, trimming waits until the position is in a later one.
    if (ownPosition.sequence <= file.sequence) break;
    found.push(file.sequence);
  }
  return found;
}

/** The position a member publishes for retention: the lowest of what it still needs. */
export function holdingPosition(
  ...positions: readonly (LogPosition | undefined)[]
): LogPosition | undefined {
  let lowest: LogPosition | undefined;
  for (const position of positions) {
    if (position && (!lowest || comparePositions(position, lowest) < 0)) lowest = position;
  }
  return lowest;
}
