/** How `view` shows a split brain: where the histories part and what each side wrote after. */
import { keys } from "../cluster/keys.ts";
import { comparePositions, positionText } from "../log/position.ts";
import { repairText } from "../roles/repair-plan.ts";
import type { SplitBrainRecord, SplitWinnerRecord } from "../roles/split-brain-repair.ts";

type Lookup = (key: string) => unknown;

/** A member's split-brain record with what the primary (the winner) wrote after the split. */
export interface SplitBrainView extends SplitBrainRecord {
  /** Log bytes and records the primary wrote after the split point; null: unknown. */
  readonly primaryBytesAfter: number | null;
  readonly primaryRecordsAfter: number | null;
  /** false while the primary has not published its count for this split point yet. */
  readonly primaryCounted?: false;
}

/** Every member's published split-brain record of `resource`, by host. */
export function splitBrainRecords(
  get: Lookup, resource: string, members: readonly string[],
): Record<string, SplitBrainView> {
  const records: Record<string, SplitBrainView> = {};
  for (const host of members) {
    const value = get(keys.splitBrain(resource, host));
    if (typeof value === "object" && value !== null && "primary" in value) {
      const record = value as SplitBrainRecord;
      records[host] = { ...record, ...winnerWrites(get, resource, record) };
    }
  }
  return records;
}

/**
 * The primary's published count after this record's split point (resource/R/split-winner);
 * undefined while it has not counted it yet (the line view says "?", --json null).
 */
function winnerWrites(get: Lookup, resource: string, record: SplitBrainRecord) {
  const unknown = { primaryBytesAfter: null, primaryRecordsAfter: null };
  const notYet = { ...unknown, primaryCounted: false };
  const split = record.splitPoint;
  const value = get(keys.splitWinner(resource, record.primary)) as SplitWinnerRecord | undefined;
  if (!split) return unknown;
  if (!Array.isArray(value?.writes)) return notYet;
  const found = value.writes.find((entry) => entry?.splitPoint &&
    comparePositions(entry.splitPoint, split) === 0);
  if (!found) return notYet;
  return { primaryBytesAfter: found.bytesAfter, primaryRecordsAfter: found.recordsAfter };
}

/** "NB/Mrecords", or "unknown" (logs gone, or not published). */
function wroteText(bytes: number | null | undefined, records: number | null | undefined) {
  if (bytes === null || bytes === undefined) return "unknown";
  return records === null || records === undefined ? `${bytes}B` : `${bytes}B/${records}records`;
}

/** One `split-brain@HOST=…` word per record for the line view. */
export function splitBrainWords(records: Readonly<Record<string, SplitBrainView>>): string[] {
  return Object.entries(records).map(([host, record]) => {
    const at = record.splitPoint ? positionText(record.splitPoint) : "?";
    const mine = `,${host}-wrote=${wroteText(record.localBytesAfter, record.localRecordsAfter)}`;
    const theirs = `,${record.primary}-wrote=` + (record.primaryCounted === false ? "?"
      : wroteText(record.primaryBytesAfter, record.primaryRecordsAfter));
    const state = record.repairStartedMs === null ? "held" : "repairing";
    const repair = record.repair === undefined ? "" : ` repair ${repairText(record.repair)}`;
    return `split-brain@${host}=${JSON.stringify(`at ${at}${mine}${theirs} (${state})` +
      `${repair}: ${record.reason}`)}`;
  });
}

/** What `invalidate --dry-run` says a resync of `host` (a split brain's repair) would move. */
export function repairPlan(get: Lookup, resource: string, host: string): string {
  const sizeBytes = Number(get(keys.size(resource)) ?? 0);
  const primary = get(keys.primary(resource));
  const source = typeof primary === "string" && primary !== "" ? primary : "(no primary)";
  const full = `${resource}: full fast sync from ${source}: compares ${sizeBytes} bytes ` +
    "block by block and transfers only the blocks that differ";
  const record = splitBrainRecords(get, resource, [host])[host];
  if (!record) return `${full}; no split brain is known on ${host}`;
  const split = record.splitPoint;
  const side = (bytes: number | null, records: number | null) => bytes === null ? "unknown"
    : `${bytes} bytes${records === null ? "" : `, ${records} records`}`;
  const sides = `the split at ${split ? positionText(split) : "?"} (log written after it: ` +
    `${host} ${side(record.localBytesAfter, record.localRecordsAfter ?? null)}; ` +
    `${record.primary} ${side(record.primaryBytesAfter, record.primaryRecordsAfter)}); ` +
    `${host}'s own logfiles are kept aside`;
  const repair = record.repair;
  if (repair?.mode === "targeted") {
    return `${resource}: split-brain repair from ${record.primary}, targeted: compares ` +
      `${repair.rangeBytes} bytes in ${repair.rangeCount} ranges (the blocks ${host}'s log ` +
      `names after the split; of ${sizeBytes}), transfers only those that differ, then ` +
      `replays ${record.primary}'s log from ${positionText(repair.startPosition)}; ${sides}`;
  }
  const why = repair ? ` (${repair.reason})` : "";
  return `${full}${why}: at most the blocks both sides wrote after ${sides}`;
}
