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
    const mine = record.localBytesAfter === null ? "" : `,${host}-wrote=${record.localBytesAfter}B`;
    const theirs = record.primaryEnd ? `,${record.primary}-log=${positionText(record.primaryEnd)}`
      : "";
    const state = record.repairStartedMs === null ? "held" : "repairing";
    return `split-brain@${host}=${JSON.stringify(`at ${at}${mine}${theirs} (${state}): ` +
      record.reason)}`;
  });
}
