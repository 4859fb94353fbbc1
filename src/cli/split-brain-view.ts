/** How `view` shows a split brain: where the histories part and what each side wrote after. */
import { keys } from "../cluster/keys.ts";
import { positionText } from "../log/position.ts";
import { repairText } from "../roles/repair-plan.ts";
import type { SplitBrainRecord } from "../roles/split-brain-repair.ts";

type Lookup = (key: string) => unknown;

/** Every member's published split-brain record of `resource`, by host. */
export function splitBrainRecords(
  get: Lookup, resource: string, members: readonly string[],
): Record<string, SplitBrainRecord> {
  const records: Record<string, SplitBrainRecord> = {};
  for (const host of members) {
    const value = get(keys.splitBrain(resource, host));
    if (typeof value === "object" && value !== null && "primary" in value) {
      records[host] = value as SplitBrainRecord;
    }
  }
  return records;
}

/** One `split-brain@HOST=…` word per record for the line view. */
export function splitBrainWords(records: Readonly<Record<string, SplitBrainRecord>>): string[] {
  return Object.entries(records).map(([host, record]) => {
    const at = record.splitPoint ? positionText(record.splitPoint) : "?";
    const records = record.localRecordsAfter === null || record.localRecordsAfter === undefined
      ? "" : `/${record.localRecordsAfter}records`;
    const mine = record.localBytesAfter === null ? ""
      : `,${host}-wrote=${record.localBytesAfter}B${records}`;
    const theirs = record.primaryEnd ? `,${record.primary}-log=${positionText(record.primaryEnd)}`
      : "";
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
  const theirs = split && record.primaryEnd && split.sequence === record.primaryEnd.sequence
    ? `${record.primaryEnd.offsetBytes - split.offsetBytes} bytes` : "unknown";
  const sides = `the split at ${split ? positionText(split) : "?"} (${host}: ` +
    `${record.localBytesAfter ?? "unknown"} bytes of log, ${record.primary}: ${theirs}); ` +
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
