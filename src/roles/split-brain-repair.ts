/** Repairs a replica whose history split from the designated primary's (docs/roles.md). */
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import { isMarsError } from "../lib/errors.ts";
import type { Clock, Storage, TimerHandle } from "../platform/types.ts";
import { setAsideLogfiles } from "./set-aside.ts";

/** How often replicas are looked at for a split brain. */
export const splitBrainCheckIntervalMs = 500;

export interface SplitBrainRepairOptions {
  readonly map: MetadataMap;
  readonly host: string;
  readonly storage: Storage;
  readonly clock: Clock;
  /** The replica's fetch state ("split-brain" once the histories diverged), if it runs. */
  readonly fetchStateOf: (resource: string) => string | undefined;
  readonly directoryOf: (resource: string) => string;
  readonly resourceNames: () => string[];
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

/**
 * A secondary in split brain with the designated primary is the loser: its logfiles go aside
 * (kept, never deleted), then it invalidates itself, so the full fast sync copies only the
 * blocks that differ and it continues on the winner's history. `pause-sync` holds the repair
 * (the split brain stays visible in `view` until the sync switch is on again).
 */
export class SplitBrainRepair {
  private timer: TimerHandle | undefined;
  private running = false;
  private stopped = false;

  constructor(private readonly options: SplitBrainRepairOptions) {}

  start(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(splitBrainCheckIntervalMs, () => {
      if (this.running) return this.start();
      this.running = true;
      void this.check().finally(() => {
        this.running = false;
        this.start();
      });
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private async check(): Promise<void> {
    for (const resource of this.options.resourceNames()) {
      if (this.stopped || !this.repairDue(resource)) continue;
      try {
        await this.repair(resource);
      } catch (error) {
        if (!isMarsError(error)) throw error;
        this.options.log("error", "split-brain-repair-failed", {
          resource, reason: error.message,
        });
      }
    }
  }

  private repairDue(resource: string): boolean {
    const { map, host } = this.options;
    const primary = map.get(keys.primary(resource));
    if (typeof primary !== "string" || primary === "" || primary === host) return false;
    if (map.get(keys.resourceMember(resource, host)) === undefined) return false;
    if (map.get(keys.todo(resource, host, "sync")) === false) return false;
    if (map.get(keys.invalidate(resource, host)) !== undefined) return false;
    return this.options.fetchStateOf(resource) === "split-brain";
  }

  private async repair(resource: string): Promise<void> {
    const { storage, clock, map, host } = this.options;
    const aside = await setAsideLogfiles(storage, this.options.directoryOf(resource),
      clock.nowMs());
    this.options.log("warn", "split-brain-repair", {
      resource, primary: String(map.get(keys.primary(resource))), keptAside: aside.path,
      logfiles: aside.moved,
    });
    map.set(keys.invalidate(resource, host), Math.floor(clock.nowMs()));
  }
}
