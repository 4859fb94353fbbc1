/** Finds and repairs a replica whose history split from the designated primary's. */
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import { isMarsError } from "../lib/errors.ts";
import { comparePositions, positionText, type LogPosition } from "../log/position.ts";
import type { Clock, Storage, TimerHandle } from "../platform/types.ts";
import { ownWritesAfter, type OwnWrites, type OwnWritesCache } from "./own-writes.ts";
import { planRepair, repairSummary, type RepairSummary } from "./repair-plan.ts";

/** How often resources whose keys changed are looked at for a split brain. */
export const splitBrainCheckIntervalMs = 500;
/** How often every resource is looked at, changed or not (a safety net under the events). */
export const splitBrainSweepIntervalMs = 10_000;

/** Value of key resource/R/split-brain/HOST (docs/roles.md). */
export interface SplitBrainRecord {
  /** The designated primary whose history wins. */
  readonly primary: string;
  /** Where the histories part: the end of the log the primary's own logfiles continue. */
  readonly splitPoint: LogPosition | null;
  /** Where this host's own log ended when it stepped down (null: not known here). */
  readonly localEnd: LogPosition | null;
  /** Log bytes and records this host wrote after the split point (null: not known here). */
  readonly localBytesAfter: number | null;
  readonly localRecordsAfter: number | null;
  /** The primary's log end as it last reported it. */
  readonly primaryEnd: LogPosition | null;
  readonly reason: string;
  readonly detectedMs: number;
  /** Set once the repair (invalidate → targeted or full fast sync) was started. */
  readonly repairStartedMs: number | null;
  /**
   * The repair as planned from this host's logfiles: while held a preview, once started the
   * plan the sync follows (and "full" with the reason when it fell back).
   */
  readonly repair?: RepairSummary | null;
}

/**
 * Value of key resource/R/split-winner/HOST: the designated primary's own log after each split
 * point a member's split-brain record names (the other side of `localBytesAfter`).
 */
export interface SplitWinnerRecord {
  readonly writes: readonly SplitWinnerWrites[];
}

export interface SplitWinnerWrites {
  readonly splitPoint: LogPosition;
  /** Where the primary's own logfiles end; null when it wrote none after the split yet. */
  readonly end: LogPosition | null;
  /** Log bytes and records it wrote after the split point; null when a logfile is gone. */
  readonly bytesAfter: number | null;
  readonly recordsAfter: number | null;
}

/** How often the primary counts its writes after a split again (it scans its live logfile). */
export const splitWinnerRefreshMs = 5000;

/** Value of key resource/R/invalidate/HOST when a split brain's repair asks for it. */
export interface SplitBrainInvalidate {
  readonly atMs: number;
  readonly primary: string;
  readonly splitPoint: LogPosition;
}

/** The split brain an invalidate request repairs (undefined: a plain full resync). */
export function splitBrainInvalidate(value: unknown): SplitBrainInvalidate | undefined {
  const request = value as Partial<SplitBrainInvalidate> | undefined;
  if (typeof request !== "object" || request === null) return undefined;
  const split = request.splitPoint;
  if (typeof request.primary !== "string" || typeof split !== "object" || split === null ||
    !Number.isSafeInteger(split.sequence) || !Number.isSafeInteger(split.offsetBytes)) {
    return undefined;
  }
  return request as SplitBrainInvalidate;
}

export interface SplitBrainRepairOptions {
  readonly map: MetadataMap;
  readonly host: string;
  readonly clock: Clock;
  readonly storage: Storage;
  readonly directoryOf: (resource: string) => string;
  /** The replica's fetch state and problem ("split-brain" once the fetcher saw divergence). */
  readonly fetcherOf: (resource: string) => { state: string; problem: string } | undefined;
  readonly resourceNames: () => string[];
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

interface ActualView {
  readonly closedLogEnd?: LogPosition | null;
  readonly continuedFrom?: LogPosition | null;
}

/**
 * The designated primary's history wins. A member is in split brain with it when its fetcher
 * found diverging chains, or when it wrote (as primary) past the point where the primary's own
 * logfiles continue the log. It then publishes what it found and, unless `pause-sync` holds it,
 * invalidates itself: the full fast sync copies only the blocks that differ, its own logfiles
 * are kept aside (src/roles/set-aside.ts), and replay continues on the winner's history.
 */
export class SplitBrainRepair {
  private timer: TimerHandle | undefined;
  private stopped = false;
  /** Divergences already acted upon (a repair is started once per split). */
  private readonly handled = new Set<string>();
  /** Per resource: the end of this host's own logfiles, for one designation of a primary. */
  private readonly ownEnds = new Map<string, { key: string; own: LoserWrites | undefined }>();
  /** Per resource, while primary: counted logfiles and when the count was last published. */
  private readonly winnerCounts = new Map<string, { cache: OwnWritesCache; atMs: number }>();
  /**
   * Resources whose keys changed since they were last looked at (a fetcher's divergence shows
   * in its published report too): an idle host with thousands of resources looks at none.
   */
  private readonly changed = new Set<string>();
  private sweptMs = -Infinity;

  constructor(private readonly options: SplitBrainRepairOptions) {
    options.map.onChange((entry) => {
      if (!entry.key.startsWith("resource/")) return;
      const resource = entry.key.slice("resource/".length, entry.key.indexOf("/", 9));
      if (resource.length > 0) this.changed.add(resource);
    });
  }

  start(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(splitBrainCheckIntervalMs, () => {
      void this.checkDue().finally(() => this.start());
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  /**
   * Looks at the resources whose keys changed and those whose winner count is due, and at all
   * of them every `splitBrainSweepIntervalMs`.
   */
  private async checkDue(): Promise<void> {
    const nowMs = this.options.clock.monotonicMs();
    let due: Iterable<string>;
    if (nowMs - this.sweptMs >= splitBrainSweepIntervalMs) {
      this.sweptMs = nowMs;
      due = this.options.resourceNames();
    } else {
      due = new Set([...this.changed, ...this.winnerCounts.keys()]);
    }
    this.changed.clear();
    for (const resource of due) {
      if (this.stopped) return;
      try {
        await this.check(resource);
      } catch (error) {
        if (!isMarsError(error)) throw error;
        this.changed.add(resource); // looked at again next time
        this.options.log("warn", "split-brain-check-failed", { resource, reason: error.message });
      }
    }
  }

  private async check(resource: string): Promise<void> {
    const { map, host } = this.options;
    const primary = map.get(keys.primary(resource));
    if (primary === host && map.get(keys.splitBrain(resource, host)) !== undefined) {
      map.delete(keys.splitBrain(resource, host)); // its history is the one that counts now
    }
    await this.publishWinnerWrites(resource, primary === host);
    if (typeof primary !== "string" || primary === "" || primary === host) return;
    if (map.get(keys.resourceMember(resource, host)) === undefined) return;
    const found = await this.divergence(resource, primary);
    if (!found) return;
    const existing = map.get(keys.splitBrain(resource, host)) as SplitBrainRecord | undefined;
    if (this.handled.has(found.id)) return;
    const paused = map.get(keys.todo(resource, host, "sync")) === false;
    const nowMs = Math.floor(this.options.clock.nowMs());
    const record: SplitBrainRecord = {
      ...found.record, detectedMs: existing?.detectedMs ?? nowMs,
      repairStartedMs: paused ? null : nowMs,
    };
    if (JSON.stringify(existing) !== JSON.stringify(record)) {
      map.set(keys.splitBrain(resource, host), record);
      this.options.log("error", "split-brain-found", {
        resource, primary, reason: record.reason, held: paused,
      });
    }
    if (paused) return;
    this.handled.add(found.id);
    // The sync's invalidate keeps this host's own logfiles aside (src/roles/set-aside.ts) and,
    // knowing the split point, plans the targeted repair (src/roles/repair-plan.ts).
    if (map.get(keys.invalidate(resource, host)) === undefined) {
      const split = record.splitPoint;
      map.set(keys.invalidate(resource, host), split
        ? { atMs: nowMs, primary, splitPoint: split } satisfies SplitBrainInvalidate : nowMs);
    }
  }

  private async divergence(resource: string, primary: string) {
    const { map, host } = this.options;
    const mine = map.get(keys.actual(resource, host)) as ActualView | undefined;
    const theirs = map.get(keys.actual(resource, primary)) as ActualView | undefined;
    const report = map.get(keys.replication(resource, primary)) as
      { logEnd?: LogPosition | null } | undefined;
    const splitPoint = theirs?.continuedFrom ?? null;
    const own = splitPoint ? await this.ownWrites(resource, primary, splitPoint) : undefined;
    const localEnd = own?.end ?? mine?.closedLogEnd ?? null;
    const base = { primary, splitPoint, localEnd, primaryEnd: report?.logEnd ?? null,
      repair: splitPoint ? own?.repair ?? null
        : { mode: "full", reason: "the split point is not known" } as const };
    if (localEnd && splitPoint && comparePositions(localEnd, splitPoint) > 0) {
      const sameLogfile = localEnd.sequence === splitPoint.sequence;
      const localBytesAfter = own?.bytesAfter ??
        (sameLogfile ? localEnd.offsetBytes - splitPoint.offsetBytes : null);
      const reason = `${host} wrote to ${positionText(localEnd)} as primary; ${primary}'s ` +
        `history continues from ${positionText(splitPoint)}`;
      return {
        id: `${primary}@${positionText(splitPoint)}`,
        record: { ...base, localBytesAfter, localRecordsAfter: own?.recordsAfter ?? null, reason },
      };
    }
    const fetcher = this.options.fetcherOf(resource);
    if (fetcher?.state !== "split-brain") return undefined;
    return {
      id: `${primary}:fetch:${fetcher.problem}`,
      record: { ...base, localBytesAfter: null, localRecordsAfter: null,
        reason: fetcher.problem },
    };
  }

  /**
   * What this host's own logfiles (written while it was primary) hold after `splitPoint`: a
   * crashed former primary knows its end only from its files. Scanned once per designation.
   */
  private async ownWrites(resource: string, primary: string, splitPoint: LogPosition) {
    const key = `${primary}@${positionText(splitPoint)}`;
    const cached = this.ownEnds.get(resource);
    if (cached?.key === key) return cached.own;
    const directory = this.options.directoryOf(resource);
    const writes = await ownWritesAfter(this.options.storage, directory, this.options.host,
      splitPoint);
    const sizeBytes = Number(this.options.map.get(keys.size(resource)) ?? 0);
    const repair = repairSummary(await planRepair(this.options.storage, directory, splitPoint,
      sizeBytes));
    const result = writes ? { ...writes, repair } : undefined;
    this.ownEnds.set(resource, { key, own: result });
    return result;
  }

  /**
   * As designated primary: counts its own log after every split point a member's record names
   * and publishes it (resource/R/split-winner/HOST), at most every `splitWinnerRefreshMs`;
   * removes it when no record names this host (or it is no longer primary).
   */
  private async publishWinnerWrites(resource: string, isPrimary: boolean): Promise<void> {
    const { map, host, clock } = this.options;
    const key = keys.splitWinner(resource, host);
    const points = isPrimary ? splitPointsNaming(map, resource, host) : [];
    if (points.length === 0) {
      this.winnerCounts.delete(resource);
      if (map.get(key) !== undefined) map.delete(key);
      return;
    }
    const nowMs = clock.monotonicMs();
    const counts = this.winnerCounts.get(resource) ?? { cache: new Map(), atMs: -Infinity };
    const published = map.get(key) as SplitWinnerRecord | undefined;
    const covered = points.every((point) => published?.writes.some((entry) =>
      comparePositions(entry.splitPoint, point) === 0));
    if (covered && nowMs - counts.atMs < splitWinnerRefreshMs) return;
    const directory = this.options.directoryOf(resource);
    const writes: SplitWinnerWrites[] = [];
    for (const splitPoint of points) {
      const own = await ownWritesAfter(this.options.storage, directory, host, splitPoint,
        counts.cache);
      writes.push({ splitPoint, end: own?.end ?? null,
        bytesAfter: own ? own.bytesAfter : 0, recordsAfter: own ? own.recordsAfter : 0 });
    }
    this.winnerCounts.set(resource, { cache: counts.cache, atMs: nowMs });
    const record: SplitWinnerRecord = { writes };
    if (JSON.stringify(published) !== JSON.stringify(record)) map.set(key, record);
  }
}

/** The distinct split points of the members' split-brain records that name `primary`. */
function splitPointsNaming(map: MetadataMap, resource: string, primary: string): LogPosition[] {
  const points: LogPosition[] = [];
  for (const entry of map.list(`resource/${resource}/split-brain/`)) {
    const record = entry.value as Partial<SplitBrainRecord> | undefined;
    const point = record?.splitPoint;
    if (record?.primary !== primary || !point) continue;
    if (!points.some((known) => comparePositions(known, point) === 0)) points.push(point);
  }
  return points;
}

/** This host's own log after a split point, as a loser sees it. */
interface LoserWrites extends OwnWrites {
  /** The repair's plan as these logfiles give it (a preview while the repair is held). */
  readonly repair: RepairSummary;
}
