/** How `view` shows a split brain: where the histories part and what each side wrote after. */
import { keys } from "../cluster/keys.ts";
import { positionText } from "../log/position.ts";
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
    return `split-brain@${host}=${JSON.stringify(`at ${at}${mine}${theirs} (${state}): ` +
      record.reason)}`;
  });
}

/** What `invalidate --dry-run` says a resync of `host` (a split brain's repair) would move. */
export function repairPlan(get: Lookup, resource: string, host: string): string {
  const sizeBytes = Number(get(keys.size(resource)) ?? 0);
  const primary = get(keys.primary(resource));
  const source = typeof primary === "string" && primary !== "" ? primary : "(no primary)";
  const head = `${resource}: full fast sync from ${source}: compares ${sizeBytes} bytes ` +
    "block by block and transfers only the blocks that differ";
  const record = splitBrainRecords(get, resource, [host])[host];
  if (!record) return `${head}; no split brain is known on ${host}`;
  const split = record.splitPoint;
  const theirs = split && record.primaryEnd && split.sequence === record.primaryEnd.sequence
    ? `${record.primaryEnd.offsetBytes - split.offsetBytes} bytes` : "unknown";
  return `${head}: at most the blocks both sides wrote after the split at ` +
    `${split ? positionText(split) : "?"} (${host}: ${record.localBytesAfter ?? "unknown"} ` +
    `bytes of log, ${record.primary}: ${theirs}); ${host}'s own logfiles are kept aside`;
}
