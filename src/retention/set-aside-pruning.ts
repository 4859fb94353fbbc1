/** Removes the left resources' set-aside state: first when space is short, else once old. */
import type { SetAsideEntry } from "../store/home.ts";
import { levelRank, type SpaceLevel } from "./space.ts";

/** How long a left or deleted resource's directory is kept under deleted/ (while space lasts). */
export const setAsideKeepMsDefault = 7 * 24 * 60 * 60 * 1000;
/** How often the age of set-aside directories is looked at when space is not short. */
export const setAsideCheckIntervalMs = 60_000;
/** The level from which set-aside directories go before anything a live resource needs. */
export const setAsideShortLevel: SpaceLevel = "trim";

export interface SetAsideStore {
  entries(): Promise<SetAsideEntry[]>;
  remove(path: string): Promise<void>;
}

export type SetAsideLog = (event: string,
  fields: Readonly<Record<string, string | number>>) => void;

/**
 * deleted/ holds what `leave-resource` and `delete-resource` set aside (docs/home-layout.md).
 * Nothing of it belongs to a live resource, so when the home runs short of space it goes first,
 * oldest first and one directory a pass (the next pass measures again); otherwise each entry
 * goes once it is older than `keepMs`.
 */
export class SetAsidePruning {
  private checkedMs = -Infinity;

  constructor(
    private readonly store: SetAsideStore,
    private readonly keepMs: number,
    private readonly log: SetAsideLog,
  ) {}

  /** `nowMs`: wall clock (the names carry wall-clock times); `monotonicMs` paces the checks. */
  async prune(level: SpaceLevel, nowMs: number, monotonicMs: number): Promise<void> {
    const short = levelRank(level) >= levelRank(setAsideShortLevel);
    if (!short && monotonicMs - this.checkedMs < setAsideCheckIntervalMs) return;
    this.checkedMs = monotonicMs;
    for (const entry of await this.store.entries()) {
      const ageMs = nowMs - entry.setAsideMs;
      const expired = ageMs >= this.keepMs;
      if (!expired && !short) return; // oldest first: the rest are younger
      await this.store.remove(entry.path);
      this.log("set-aside-removed", {
        path: entry.path, ageMs: Math.max(0, Math.round(ageMs)),
        reason: expired ? "kept long enough" : `home short of space (${level})`,
      });
      if (!expired) return;
    }
  }
}
