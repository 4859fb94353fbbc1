/** The engine's log lifetime: deletes replayed logfiles, watches free space, runs emergencies. */
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import { isMarsError } from "../lib/errors.ts";
import { comparePositions, parseLogfileName, type LogPosition } from "../log/position.ts";
import type { Clock, Storage, TimerHandle } from "../platform/types.ts";
import type { ReplicationReport } from "../replication/report.ts";
import type { ReplicationService } from "../replication/service.ts";
import type { EmergencyDevice } from "./emergency.ts";
import { SpaceGuard } from "./space-guard.ts";
import {
  SetAsidePruning, setAsideKeepMsDefault, type SetAsideStore,
} from "./set-aside-pruning.ts";
import {
  decideRetention, defaultRetentionLimits, trimmable, type LogfileFact, type RetentionLimits,
} from "./policy.ts";
import {
  chooseEmergency, defaultSpaceThresholds, levelRank, spaceLevel, type SpaceLevel,
  type SpaceThresholds,
} from "./space.ts";

/** How often space is measured and retention decided. */
export const lifetimeIntervalMs = 500;
/** The reason this module holds a replica's fetching (the home is short of space). */
export const fetchHoldReason = "home short of space";
/** Logfiles removed in one pass per resource (the rest go in the next pass). */
export const removalsPerPassMax = 64;
/**
 * Every resource's logfiles are listed at least this often; in between, a pass at level `ok`
 * or `warn` looks only at resources whose positions or members changed (an idle host with
 * thousands of resources lists none), so a logfile ages past `lagAgeMsMax` this much late.
 */
export const lifetimeSweepIntervalMs = 30_000;

export interface LifetimeSettings {
  readonly thresholds: SpaceThresholds;
  readonly retention: RetentionLimits;
  /** How long deleted/ keeps a left resource's directory while space lasts. */
  readonly setAsideKeepMs?: number;
}

export const defaultLifetimeSettings: LifetimeSettings = {
  thresholds: defaultSpaceThresholds, retention: defaultRetentionLimits,
  setAsideKeepMs: setAsideKeepMsDefault,
};

export interface LifetimeServiceOptions {
  readonly map: MetadataMap;
  readonly host: string;
  readonly storage: Storage;
  readonly clock: Clock;
  /** The home: its file system is the one that fills. */
  readonly homePath: string;
  readonly settings: LifetimeSettings;
  readonly replication: Pick<ReplicationService, "replica">;
  /** The home's deleted/ directory (left resources' state); absent: never pruned. */
  readonly setAside?: SetAsideStore;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

interface Registered {
  readonly directory: string;
  readonly emergency?: EmergencyDevice;
  fetchStopped: boolean;
  /** This host's own position when the resource was last looked at (it moves unpublished). */
  seen?: LogPosition | undefined;
}

export class LifetimeService {
  level: SpaceLevel = "ok";
  private readonly resources = new Map<string, Registered>();
  /** Admits every logged write of this home's primaries (no log append meets ENOSPC). */
  private readonly guard: SpaceGuard;
  private timer: TimerHandle | undefined;
  private running = false;
  private stopped = false;
  /** Resources whose published positions, members or primary changed since their last look. */
  private readonly changed = new Set<string>();
  private sweptMs = -Infinity;
  private readonly pruning: SetAsidePruning | undefined;

  constructor(private readonly options: LifetimeServiceOptions) {
    this.guard = new SpaceGuard(() => options.storage.files.space(options.homePath));
    this.pruning = options.setAside && new SetAsidePruning(options.setAside,
      options.settings.setAsideKeepMs ?? setAsideKeepMsDefault,
      (event, fields) => options.log("warn", event, fields));
    options.map.onChange((entry) => {
      const [first, resource, third] = entry.key.split("/", 3);
      if (first === "resource" && resource && (third === "replication" ||
        third === "member" || third === "primary")) this.changed.add(resource);
    });
    this.schedule();
  }

  /** Registers a primary's log directory and its export (for emergency mode). */
  attachPrimary(resource: string, directory: string, emergency: EmergencyDevice): () => void {
    this.resources.set(resource, { directory, emergency, fetchStopped: false });
    this.changed.add(resource);
    const unguard = emergency.guardSpace(this.guard, (bytes) => {
      this.options.log("warn", "emergency-enter", { resource, bytes,
        reason: "no room left in the home for the log" });
    });
    return () => {
      unguard();
      this.resources.delete(resource);
    };
  }

  attachSecondary(resource: string, directory: string): () => void {
    this.resources.set(resource, { directory, fetchStopped: false });
    this.changed.add(resource);
    return () => void this.resources.delete(resource);
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(lifetimeIntervalMs, () => {
      if (this.running) return this.schedule();
      this.running = true;
      this.pass().catch((error: unknown) => {
        if (!isMarsError(error)) throw error;
        this.options.log("error", "lifetime-pass-failed", { reason: error.message });
      }).finally(() => {
        this.running = false;
        this.schedule();
      });
    });
  }

  /** One pass: measure, react to the level, then delete what nobody needs. */
  private async pass(): Promise<void> {
    const space = await this.guard.measureNow();
    const previous = this.level;
    this.level = spaceLevel(space.freeBytes, space.totalBytes, previous,
      this.options.settings.thresholds);
    if (this.level !== previous) {
      this.options.log(levelRank(this.level) > levelRank(previous) ? "warn" : "info",
        "space-level", { level: this.level, previous, freeBytes: space.freeBytes,
          totalBytes: space.totalBytes });
    }
    await this.phase0SetAside();
    const facts = new Map<string, LogfileFact[]>();
    for (const [resource, registered] of this.due(this.level !== previous)) {
      facts.set(resource, await this.logfiles(registered.directory));
    }
    await this.phase1Emergency(facts, space.freeBytes, space.totalBytes);
    for (const [resource, logfiles] of facts) {
      const registered = this.resources.get(resource);
      if (!registered) continue; // detached meanwhile
      this.phase2Fetching(resource, registered);
      this.phase3MarkOutdated(resource);
      await this.phase4Delete(resource, registered, logfiles);
    }
  }

  /**
   * The resources this pass looks at: all of them when the level changed, at `trim` and
   * above (space is short), and every `lifetimeSweepIntervalMs`; else those whose published
   * positions, members or primary changed, whose own position (the persisted writeback, the
   * replay) moved, and primaries writing past their log.
   */
  private due(levelChanged: boolean): [string, Registered][] {
    const nowMs = this.options.clock.monotonicMs();
    const all = levelChanged || levelRank(this.level) >= levelRank("trim") ||
      nowMs - this.sweptMs >= lifetimeSweepIntervalMs;
    if (all) this.sweptMs = nowMs;
    const due = [...this.resources].filter(([resource, registered]) => {
      const own = this.ownPosition(resource);
      const moved = own === undefined || registered.seen === undefined
        ? own !== registered.seen : comparePositions(own, registered.seen) !== 0;
      registered.seen = own;
      return all || moved || this.changed.has(resource) || registered.emergency?.mode === "direct";
    });
    this.changed.clear();
    return due;
  }

  /** Phase 0: left resources' directories go before anything a live resource needs. */
  private async phase0SetAside(): Promise<void> {
    const { clock } = this.options;
    try {
      await this.pruning?.prune(this.level, clock.nowMs(), clock.monotonicMs());
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.options.log("error", "set-aside-removal-failed", { reason: error.message });
    }
  }

  /** Phase 1 (primaries): enter emergency for the largest backlogs; leave once space is back. */
  private async phase1Emergency(
    facts: Map<string, LogfileFact[]>, freeBytes: number, totalBytes: number,
  ): Promise<void> {
    const primaries = [...this.resources].filter(([, item]) => item.emergency !== undefined);
    if (this.level === "emergency") {
      const backlogs = primaries.filter(([, item]) => item.emergency!.mode === "logging")
        .map(([resource]) => ({ resource, backlogBytes: (facts.get(resource) ?? [])
          .reduce((sum, file) => sum + file.lengthBytes, 0) }));
      const chosen = chooseEmergency(backlogs, freeBytes, totalBytes,
        this.options.settings.thresholds);
      for (const resource of chosen) {
        this.options.log("warn", "emergency-enter", { resource, freeBytes });
        await this.resources.get(resource)!.emergency!.enter();
      }
    } else if (levelRank(this.level) < levelRank("stop-fetch")) {
      let logging = primaries.filter(([, item]) => item.emergency!.mode === "logging").length;
      const spareBytes = totalBytes * this.options.settings.thresholds.hysteresisFraction;
      for (const [resource, item] of primaries) {
        if (item.emergency!.mode !== "direct") continue;
        // Not while the guard would send it straight back (each emergency costs a gap).
        if (!this.guard.roomToLog(freeBytes, logging + 1, spareBytes)) continue;
        logging++;
        this.options.log("info", "emergency-leave", { resource, freeBytes });
        await item.emergency!.leave();
      }
    }
  }

  /** Phase 2 (secondaries): stop fetching at "stop-fetch", fetch again below it. */
  private phase2Fetching(resource: string, registered: Registered): void {
    const replica = this.options.replication.replica(resource);
    if (!replica || registered.emergency) return;
    const stop = levelRank(this.level) >= levelRank("stop-fetch");
    if (stop === registered.fetchStopped) return;
    registered.fetchStopped = stop;
    if (stop) replica.holdFetch(fetchHoldReason);
    else replica.releaseFetch(fetchHoldReason);
    this.options.log(stop ? "warn" : "info", stop ? "fetch-stopped" : "fetch-resumed",
      { resource, level: this.level });
  }

  /** Phase 3 (secondaries): a primary in emergency leaves this replica outdated until a sync. */
  private phase3MarkOutdated(resource: string): void {
    const replica = this.options.replication.replica(resource);
    const primary = this.options.map.get(keys.primary(resource));
    if (!replica || typeof primary !== "string" || primary === this.options.host) return;
    const report = this.options.map.get(keys.replication(resource, primary)) as
      Partial<ReplicationReport> | undefined;
    if (report?.emergency === true && replica.report().status !== "emergency") {
      replica.overrideStatus("emergency");
      this.options.log("warn", "replica-outdated", { resource, primary });
    }
  }

  /** Phase 4: delete the logfiles every holding member passed (or, trimming, this one). */
  private async phase4Delete(
    resource: string, registered: Registered, logfiles: LogfileFact[],
  ): Promise<void> {
    let deletable: readonly number[];
    if (registered.emergency?.mode === "direct") {
      deletable = logfiles.slice(0, -1).map((file) => file.sequence);
    } else {
      const decision = decideRetention(logfiles, this.holders(resource),
        this.options.clock.nowMs(), this.options.settings.retention);
      deletable = decision.deletable;
      for (const dropped of decision.dropped) {
        this.options.log("warn", "retention-dropped", { resource, ...dropped });
      }
      if (!registered.emergency && levelRank(this.level) >= levelRank("trim")) {
        const own = this.holders(resource).find((member) => member.host === this.options.host);
        const trim = trimmable(logfiles, own?.position);
        if (trim.length > deletable.length) deletable = trim;
      }
    }
    const removed = deletable.slice(0, removalsPerPassMax);
    await this.remove(registered.directory, logfiles, removed);
    if (deletable.length > removed.length) this.changed.add(resource); // the rest next pass
    if (removed.length > 0) {
      this.options.replication.replica(resource)?.fetcher.forgetBelow(removed.at(-1)! + 1);
    }
  }

  /**
   * Every member's published position (the primary's writeback, a replica's replay), with this
   * host's own taken from the live objects: a report may be late, and this host's recovery or
   * replay must never find its logfile deleted. Hosts no longer members hold nothing.
   */
  private holders(resource: string): { host: string; position: LogPosition | undefined }[] {
    const { map, host } = this.options;
    const found: { host: string; position: LogPosition | undefined }[] = [];
    for (const entry of map.list(`resource/${resource}/replication/`)) {
      const owner = entry.key.split("/")[3]!;
      if (owner === host || map.get(keys.resourceMember(resource, owner)) === undefined) continue;
      const report = entry.value as Partial<ReplicationReport> | undefined;
      found.push({ host: owner, position: report?.replayed ?? undefined });
    }
    found.push({ host, position: this.ownPosition(resource) });
    return found;
  }

  /** Where this host's disk stands: the primary's writeback, or the replica's replay. */
  private ownPosition(resource: string): LogPosition | undefined {
    const registered = this.resources.get(resource);
    // The persisted position, not the live one: writeback may be ahead of the last flush and
    // persist, and a crash then recovers from the persisted position, whose logfile must exist.
    if (registered?.emergency) return registered.emergency.persistedPosition;
    const replica = this.options.replication.replica(resource);
    if (replica) return replica.replayer.position;
    const report = this.options.map.get(keys.replication(resource, this.options.host)) as
      Partial<ReplicationReport> | undefined;
    return report?.replayed ?? undefined;
  }

  private async logfiles(directory: string): Promise<LogfileFact[]> {
    const { storage } = this.options;
    if (!(await storage.files.status(directory))) return [];
    const facts: (LogfileFact & { name: string })[] = [];
    for (const name of await storage.files.list(directory)) {
      const parsed = parseLogfileName(name);
      if (!parsed) continue;
      const status = await storage.files.status(`${directory}/${name}`);
      if (!status) continue;
      facts.push({ name, sequence: parsed.sequence, lengthBytes: status.sizeBytes,
        createdMs: status.modifiedMs });
    }
    return facts.sort((left, right) => left.sequence - right.sequence);
  }

  private async remove(
    directory: string, logfiles: readonly LogfileFact[], sequences: readonly number[],
  ): Promise<void> {
    if (sequences.length === 0) return;
    for (const sequence of sequences) {
      const file = logfiles.find((item) => item.sequence === sequence) as
        (LogfileFact & { name?: string }) | undefined;
      if (file?.name) await this.options.storage.files.remove(`${directory}/${file.name}`);
    }
    await this.options.storage.files.syncDirectory(directory);
    this.options.log("info", "logfiles-deleted", { directory, count: sequences.length,
      through: sequences.at(-1) });
  }
}
