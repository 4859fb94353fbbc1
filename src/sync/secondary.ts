/** One secondary's way to a replica: full sync when needed, then replay, and invalidate. */
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import { isMarsError } from "../lib/errors.ts";
import { openFileDevice } from "../block/file.ts";
import { comparePositions, positionText, type LogPosition } from "../log/position.ts";
import type { Address, Clock, Network, Storage, TimerHandle } from "../platform/types.ts";
import type { ReplicationReport } from "../replication/report.ts";
import type { ReplicationService } from "../replication/service.ts";
import { positionFileName, PositionStore } from "../translog/position-store.ts";
import { keepCommonLogfiles } from "../roles/common-logfiles.ts";
import { setAsideOwnLogfiles } from "../roles/set-aside.ts";
import { planRepair, repairSummary, type RepairMode } from "../roles/repair-plan.ts";
import {
  splitBrainInvalidate, type SplitBrainRecord,
} from "../roles/split-brain-repair.ts";
import { dialChannel, type ChannelContext, type Session } from "../transport/channel.ts";
import type { ChunkBufferPool } from "./chunk.ts";
import { fileCursorStore, type SyncCursor, type SyncCursorStore } from "./cursor.ts";
import { catchUpDone, runFullSync, type TargetedPlan } from "./full-sync.ts";
import { RemoteSyncPeer } from "./remote.ts";
import type { SyncMessage } from "./wire.ts";

/** Wait between attempts while the source is unreachable or no sync slot is free. */
export const syncRetryDelayMs = 1000;
/**
 * The first retry after an interrupted attempt comes this soon, doubling up to
 * `syncRetryDelayMs`: a joiner's first attempt is often refused only because its membership
 * has not reached the primary yet, which takes milliseconds, not a second.
 */
export const syncRetryDelayMsMin = 50;
/** How often a catching-up replica is checked against the sync's end position. */
export const catchUpCheckIntervalMs = 250;
/**
 * Hosts copying blocks at once, cluster-wide: each sees the others' "syncing" reports in the
 * replicated metadata. Two hosts deciding in the same instant may both start, so the limit
 * holds within one report's propagation time.
 */
export const clusterSyncsMax = 4;

/** What the sync service and each secondary's sync are handed (the same effects). */
export interface SyncEffects {
  readonly map: MetadataMap;
  readonly host: string;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly network: Network;
  readonly context: ChannelContext;
  readonly addressOf: (host: string) => Address | undefined;
  readonly replication: Pick<ReplicationService, "attachSecondary" | "replica">;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

export interface SecondarySyncOptions extends SyncEffects {
  readonly resource: string;
  readonly disk: string;
  readonly directory: string;
  readonly syncsRunning: () => number;
  readonly publish: (report: ReplicationReport) => void;
  readonly clusterSyncsMax?: number;
  /** The engine's chunk buffers (page-aligned, shared by its syncs). */
  readonly chunkBuffers?: ChunkBufferPool;
}

export class SecondarySync {
  private stopped = false;
  private running: Promise<void> | undefined;
  private closeReplica: (() => Promise<void>) | undefined;
  private session: Session | undefined;
  private timer: TimerHandle | undefined;
  private wake: (() => void) | undefined;
  private readonly cursors: SyncCursorStore;
  /** The sync's catch-up start: published as this member's retention hold while it copies. */
  private holdPosition: LogPosition | undefined;
  /** The wait before the next attempt after an interrupted copy (backs off while it fails). */
  private interruptedRetryDelayMs = syncRetryDelayMsMin;
  /** From an invalidation until the sync's cursor is saved: the log this replica still needs. */
  private invalidatedHold: LogPosition | undefined;
  /** A split brain's targeted repair, planned at invalidate; used by the next sync it starts. */
  private plan: (TargetedPlan & { splitPoint: LogPosition; splitKey: string }) | undefined;
  /** The split point the last targeted copy repaired (its catch-up may still find it void). */
  private targetedSplitKey: string | undefined;
  /** Split points whose targeted repair found the histories apart before them (then: full). */
  private readonly targetedFailed = new Set<string>();
  /** Bound of that set: one entry per split brain this process repaired. */
  private static readonly targetedFailedMax = 64;

  constructor(private readonly options: SecondarySyncOptions) {
    const files = fileCursorStore(options.storage, options.directory);
    this.cursors = {
      load: async () => {
        const cursor = await files.load();
        this.holdPosition = cursor?.startPosition;
        return cursor;
      },
      save: async (cursor) => {
        await files.save(cursor);
        this.holdPosition = cursor.startPosition;
        this.invalidatedHold = undefined;
      },
      clear: async () => {
        await files.clear();
        this.holdPosition = undefined;
      },
    };
  }

  /** Opens the replica at once when no sync is due; otherwise syncs in the background. */
  async start(): Promise<void> {
    await this.options.storage.files.makeDirectory(this.options.directory);
    if (!this.invalidateRequested() && !(await this.syncDue())) await this.phase3Replica();
    this.running = this.loop().catch((error: unknown) => {
      if (!isMarsError(error)) throw error;
      this.options.log("error", "sync-failed", { resource: this.options.resource,
        reason: error.message });
    });
  }

  /** Its invalidate key or sync switch changed (the service listens once for every resource). */
  changed(): void {
    this.wake?.();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.session?.close();
    this.timer?.cancel();
    this.wake?.();
    await this.running;
    await this.closeReplica?.();
    this.closeReplica = undefined;
  }

  private async loop(): Promise<void> {
    while (!this.stopped) {
      if (this.invalidateRequested()) await this.phase0Invalidate();
      if (this.closeReplica === undefined) {
        if (await this.syncDue()) {
          if (!(await this.phase1Copy())) continue;
        }
        if (this.stopped) return;
        await this.phase3Replica();
      }
      await this.phase4CatchUp();
      await this.phase5Watch();
    }
  }

  /** A cursor to finish, or a disk that never replayed (a new member): it needs a sync. */
  private async syncDue(): Promise<boolean> {
    if (await this.cursors.load()) return true;
    const path = `${this.options.directory}/${positionFileName}`;
    if (!(await this.options.storage.files.status(path))) return true;
    const store = await PositionStore.open(this.options.storage, this.options.directory);
    const fresh = store.current === undefined;
    await store.close();
    return fresh;
  }

  private invalidateRequested(): boolean {
    const { map, resource, host } = this.options;
    return map.get(keys.invalidate(resource, host)) !== undefined &&
      map.get(keys.primary(resource)) !== host;
  }

  /** Phase 0: forget this replica (replay position, logfiles, cursor); a sync follows. */
  private async phase0Invalidate(): Promise<void> {
    const { storage, directory, resource, host } = this.options;
    this.options.log("info", "replica-invalidated", { resource });
    const replayed = this.options.replication.replica(resource)?.replayer.position;
    await this.closeReplica?.();
    this.closeReplica = undefined;
    await this.cursors.clear();
    // Planned before any logfile moves: they name the blocks a split brain's loser changed.
    this.plan = await this.planTargetedRepair();
    // Published before the invalidate key is deleted (stamp order): no peer ever sees the
    // request done while the old replica's state (emergency, defective) still stands. It
    // keeps holding the log a targeted repair replays from until the sync's cursor does.
    this.invalidatedHold = this.plan?.startPosition ?? replayed;
    this.report(undefined, "invalidated: a full sync follows");
    // The replay position goes first: a crash from here on (some logfiles already aside) finds
    // none, so the plan made again after a restart is a full sync, never one naming too little.
    const positionPath = `${directory}/${positionFileName}`;
    if (await storage.files.status(positionPath)) {
      await storage.files.remove(positionPath);
      await storage.files.syncDirectory(directory);
    }
    // Its own logfiles (a former primary's, maybe a split brain's loser) are kept, not deleted.
    const aside = await setAsideOwnLogfiles(storage, directory, host, this.options.clock.nowMs());
    if (aside) this.options.log("warn", "logfiles-kept-aside", { resource, path: aside.path,
      count: aside.moved });
    const kept = await this.keepSharedHistory(aside?.path);
    for (const name of await storage.files.list(directory)) {
      if (name === positionFileName || (name.startsWith("log-") && !kept.has(name))) {
        await storage.files.remove(`${directory}/${name}`);
      }
    }
    await storage.files.syncDirectory(directory);
    this.options.map.delete(keys.invalidate(resource, host));
  }

  private async dropLogfiles(): Promise<void> {
    const { storage, directory } = this.options;
    for (const name of await storage.files.list(directory)) {
      if (name.startsWith("log-")) await storage.files.remove(`${directory}/${name}`);
    }
    await storage.files.syncDirectory(directory);
  }

  /** A targeted repair keeps the shared history up to the split point (its chain is checked). */
  private async keepSharedHistory(asidePath: string | undefined): Promise<Set<string>> {
    const plan = this.plan;
    if (!plan) return new Set();
    try {
      return await keepCommonLogfiles(this.options.storage, this.options.directory, asidePath,
        plan.startPosition, plan.splitPoint);
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.plan = undefined;
      this.publishRepair({ mode: "full", reason: error.message });
      return new Set();
    }
  }

  /**
   * A split brain's invalidate (src/roles/split-brain-repair.ts) against the still designated
   * primary: the ranges this replica's log names after the split, and where replay restarts.
   * Anything else (a plain `mars invalidate`, another primary, a plan that cannot name every
   * changed block) is a full fast sync.
   */
  private async planTargetedRepair() {
    const { map, resource, host, storage, directory } = this.options;
    const split = splitBrainInvalidate(map.get(keys.invalidate(resource, host)));
    if (!split || split.primary !== map.get(keys.primary(resource))) return undefined;
    const splitKey = `${split.primary}@${positionText(split.splitPoint)}`;
    if (this.targetedFailed.has(splitKey)) {
      this.publishRepair({ mode: "full", reason: "the targeted repair found the histories " +
        "apart before the split point" });
      return undefined;
    }
    const sizeBytes = Number(map.get(keys.size(resource)) ?? 0);
    const repair: RepairMode = sizeBytes > 0
      ? await planRepair(storage, directory, split.splitPoint, sizeBytes)
      : { mode: "full", reason: "the resource's size is not known" };
    this.publishRepair(repair);
    if (repair.mode === "full") return undefined;
    return { source: split.primary, startPosition: repair.startPosition, ranges: repair.ranges,
      splitPoint: split.splitPoint, splitKey };
  }

  /** The split-brain record says which repair runs (view, invalidate --dry-run). */
  private publishRepair(repair: RepairMode): void {
    const { map, resource, host } = this.options;
    const key = keys.splitBrain(resource, host);
    const record = map.get(key) as SplitBrainRecord | undefined;
    this.options.log(repair.mode === "full" ? "warn" : "info", "split-brain-repair-planned", {
      resource, mode: repair.mode,
      ...(repair.mode === "full" ? { reason: repair.reason }
        : { ranges: repair.ranges.length, rangeBytes: repair.rangeBytes }),
    });
    if (record) map.set(key, { ...record, repair: repairSummary(repair) });
  }

  /** Phase 1: copy blocks until done; false when it must be tried again (or stopped). */
  private async phase1Copy(): Promise<boolean> {
    const source = this.sourceReady();
    if (typeof source === "string") {
      this.report(undefined, source);
      await this.sleep(syncRetryDelayMs);
      return false;
    }
    try {
      const cursor = await this.copyFrom(source.peer, source.address);
      if (!cursor) return false;
      this.interruptedRetryDelayMs = syncRetryDelayMsMin;
      await this.phase2Position(cursor);
      return true;
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.options.log("warn", "sync-interrupted", { resource: this.options.resource,
        reason: error.message });
      this.report(undefined, error.message);
      await this.sleep(this.interruptedRetryDelayMs);
      this.interruptedRetryDelayMs = Math.min(syncRetryDelayMs, this.interruptedRetryDelayMs * 2);
      return false;
    }
  }

  /** Why the copy cannot start now, or the source to copy from. */
  private sourceReady(): string | { peer: string; address: Address } {
    const { map, resource, host } = this.options;
    if (map.get(keys.todo(resource, host, "sync")) === false) return "sync paused";
    const primary = map.get(keys.primary(resource));
    if (typeof primary !== "string" || primary === "" || primary === host) {
      return "no primary to sync from";
    }
    const address = this.options.addressOf(primary);
    if (!address) return `no address for ${primary}`;
    const limit = this.options.clusterSyncsMax ?? clusterSyncsMax;
    if (this.options.syncsRunning() >= limit) return `waiting: ${limit} syncs run already`;
    return { peer: primary, address };
  }

  private async copyFrom(peerHost: string, address: Address): Promise<SyncCursor | undefined> {
    const { storage, network, context, resource, clock } = this.options;
    let remote: RemoteSyncPeer | undefined;
    const session = await dialChannel(network, address, context, "sync", () => ({
      message: (message) => {
        if (message.type.startsWith("sync-")) remote?.receive(message as SyncMessage);
      },
      closed: (reason) => remote?.closed(reason),
    }));
    this.session = session;
    remote = new RemoteSyncPeer(session, resource);
    const target = await openFileDevice(storage, this.options.disk, { directWrites: true });
    const startedMs = clock.monotonicMs();
    this.options.log("info", "sync-started", { resource, source: peerHost });
    try {
      const outcome = await runFullSync({
        target, peer: remote, cursors: this.cursors, clock,
        ...(this.plan ? { plan: this.plan } : {}),
        ...(this.options.chunkBuffers ? { buffers: this.options.chunkBuffers } : {}),
        progress: (copied, size) => this.report(progressOf(copied, size, startedMs, clock)),
        stopRequested: () => this.stopped || this.sourceReady() === "sync paused",
      });
      this.options.log("info", "sync-copied", { resource, state: outcome.state,
        targeted: outcome.targeted, comparedBytes: outcome.comparedBytes,
        transferredBlocks: outcome.transferredBlocks });
      if (this.plan && !outcome.targeted) {
        this.publishRepair({ mode: "full", reason: "the primary changed before the copy" });
        // The shared history kept for the plan is not the new source's: its chain check
        // must not meet it. (Copies only: own logfiles stay in split-brain-TIME/.)
        await this.dropLogfiles();
        this.plan = undefined;
      }
      if (outcome.targeted) this.targetedSplitKey = this.plan?.splitKey;
      if (outcome.state === "copied") this.plan = undefined;
      return outcome.state === "copied" ? outcome.cursor : undefined;
    } finally {
      await target.close();
      session.close();
      this.session = undefined;
    }
  }

  /** Phase 2: the replica will replay from the sync's start position. */
  private async phase2Position(cursor: SyncCursor): Promise<void> {
    const store = await PositionStore.open(this.options.storage, this.options.directory);
    try {
      const current = store.current;
      if (!current || comparePositions(current, cursor.startPosition) < 0) {
        await store.write(cursor.startPosition);
      }
    } finally {
      await store.close();
    }
  }

  /** Phase 3: fetch and replay run (inconsistent while a sync cursor still exists). */
  private async phase3Replica(): Promise<void> {
    const { resource, disk, directory } = this.options;
    // The cursor is read first: a replica opened consistent and marked otherwise afterwards
    // could publish one report in between that calls a half-synced disk consistent.
    const cursor = await this.cursors.load();
    const reason = cursor
      ? `full sync: catch-up replay to ${positionText(cursor.endPosition ?? cursor.startPosition)}`
      : undefined;
    this.closeReplica = await this.options.replication.attachSecondary(resource, disk, directory,
      reason);
  }

  /** Phase 4: once replay reached the sync's end position, the replica is consistent. */
  private async phase4CatchUp(): Promise<void> {
    const cursor = await this.cursors.load();
    if (!cursor) return;
    while (!this.stopped && !this.invalidateRequested()) {
      const replica = this.options.replication.replica(this.options.resource);
      if (!replica) return;
      if (replica.replayer.state === "gap") {
        // The primary went into emergency mode during the copy: the writes it made meanwhile
        // are in no log, so this copy can never become consistent. Sync again.
        this.options.log("warn", "sync-cut-by-gap", { resource: this.options.resource });
        this.options.map.set(keys.invalidate(this.options.resource, this.options.host),
          Math.floor(this.options.clock.nowMs()));
        return;
      }
      const fetcher = replica.fetcher;
      if (fetcher.state === "source-missing" && fetcher.problem.includes("full sync")) {
        // The log the catch-up replays from is gone at the source (a targeted repair's split
        // point deleted by retention): only a full fast sync can make this replica whole.
        this.options.log("warn", "sync-catch-up-log-gone", { resource: this.options.resource,
          reason: fetcher.problem });
        if (cursor.ranges) {
          this.publishRepair({ mode: "full", reason: `the log from the split is gone: ` +
            fetcher.problem });
        }
        this.options.map.set(keys.invalidate(this.options.resource, this.options.host),
          Math.floor(this.options.clock.nowMs()));
        return;
      }
      if (fetcher.state === "split-brain" && cursor.ranges) {
        // The winner's log does not continue the shared history kept here: the two differ
        // before the split point, so the blocks the plan named are not all. Sync in full.
        this.options.log("warn", "sync-targeted-void", { resource: this.options.resource,
          reason: fetcher.problem });
        if (this.targetedFailed.size < SecondarySync.targetedFailedMax) {
          this.targetedFailed.add(this.targetedSplitKey ?? "");
        }
        this.publishRepair({ mode: "full", reason: `histories apart before the split: ` +
          fetcher.problem });
        this.options.map.set(keys.invalidate(this.options.resource, this.options.host),
          Math.floor(this.options.clock.nowMs()));
        return;
      }
      if (await catchUpDone(this.cursors, replica.replayer.position)) {
        replica.markConsistent();
        this.options.log("info", "sync-done", { resource: this.options.resource });
        return;
      }
      await this.sleep(catchUpCheckIntervalMs);
    }
  }

  /**
   * Phase 5: while the replica runs, watch for the log it needs being gone at its source
   * (retention dropped this member, or emergency mode cut the history): then it invalidates
   * itself, and the loop syncs it.
   */
  private async phase5Watch(): Promise<void> {
    const { map, resource, host } = this.options;
    while (!this.stopped && !this.invalidateRequested()) {
      const fetcher = this.options.replication.replica(resource)?.fetcher;
      if (fetcher?.state === "source-missing" && fetcher.problem.includes("full sync")) {
        this.options.log("warn", "replica-log-gone", { resource, reason: fetcher.problem });
        map.set(keys.invalidate(resource, host), Math.floor(this.options.clock.nowMs()));
        return;
      }
      // Woken by the service's shared timer (no timer per resource) or a key change.
      await this.sleep(undefined);
    }
  }

  /** Waits `delayMs` (or until woken by a switch or invalidate change, or stop). */
  private sleep(delayMs: number | undefined): Promise<void> {
    if (this.stopped) return Promise.resolve();
    return new Promise<void>((resolve) => {
      const done = () => {
        this.timer?.cancel();
        this.timer = undefined;
        this.wake = undefined;
        resolve();
      };
      this.wake = done;
      if (delayMs !== undefined) this.timer = this.options.clock.setTimer(delayMs, done);
    });
  }

  private report(progress?: { percent: number; etaSeconds: number | null }, problem?: string) {
    const primary = this.options.map.get(keys.primary(this.options.resource));
    this.options.publish({
      // `replayed` names where the catch-up replay starts: retention keeps the log from there.
      status: "syncing", consistent: false, logEnd: null, fetched: null,
      replayed: this.holdPosition ?? this.invalidatedHold ?? null,
      fetchLagBytes: 0, replayLagBytes: 0, fetchRateBytesPerSecond: 0,
      replayRateBytesPerSecond: 0, writeRateBytesPerSecond: 0,
      source: typeof primary === "string" && primary !== "" ? primary : null,
      fetchState: "sync", replayState: "sync", defect: null, problem: problem ?? null,
      syncPercent: progress?.percent ?? null, syncEtaSeconds: progress?.etaSeconds ?? null,
      emergency: false, reportedMs: Math.floor(this.options.clock.nowMs()),
    });
  }
}

function progressOf(copiedBytes: number, sizeBytes: number, startedMs: number, clock: Clock) {
  const percent = sizeBytes === 0 ? 100 : Math.floor((copiedBytes * 100) / sizeBytes);
  const elapsedMs = clock.monotonicMs() - startedMs;
  const etaSeconds = copiedBytes === 0 || elapsedMs <= 0 ? null
    : Math.round(((sizeBytes - copiedBytes) * elapsedMs) / copiedBytes / 1000);
  return { percent, etaSeconds };
}
