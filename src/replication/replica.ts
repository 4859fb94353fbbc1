/** One resource's replica on a secondary: fetch + replay, their switches, state and hooks. */
import { openFileDevice } from "../block/file.ts";
import { growingFileDevice } from "../block/resizable.ts";
import type { BlockDevice } from "../block/types.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";
import type { Clock, Network, Storage } from "../platform/types.ts";
import { PositionStore } from "../translog/position-store.ts";
import type { ChannelContext } from "../transport/channel.ts";
import { Fetcher, type FetchSource } from "./fetcher.ts";
import { Replayer } from "./replayer.ts";
import type { ReplicaStatus, ReplicationReport } from "./report.ts";

export interface ReplicaOptions {
  readonly resource: string;
  readonly disk: string;
  readonly directory: string;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly network: Network;
  readonly context: ChannelContext;
  readonly fetchRateBytesPerSecondMax?: number;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Record<string, unknown>) => void;
  /** Something worth publishing changed. */
  readonly changed: () => void;
  /**
   * Opens the replica inconsistent for this reason (a sync's catch-up replay is still due), so
   * no report can show it consistent before its driver had a chance to say otherwise.
   */
  readonly inconsistentReason?: string;
}

export interface ReplicaSwitches {
  readonly fetch: boolean;
  readonly replay: boolean;
}

/**
 * Hooks for the code that drives a replica from outside (full sync, log lifetime): a sync marks
 * the replica inconsistent and sets status "syncing" while it copies blocks, then sets the replay
 * start and clears both once its catch-up replay is done; emergency mode sets "emergency".
 */
export interface ReplicaDriver {
  markInconsistent(reason: string): void;
  markConsistent(): void;
  /**
   * Stops fetching for `reason` (e.g. the store is short of space) until released; the fetch
   * switch and the source are kept, so a release resumes exactly where fetching stood.
   */
  holdFetch(reason: string): void;
  releaseFetch(reason: string): void;
  /** Shows a status that this module does not derive itself ("syncing", "emergency"). */
  overrideStatus(status: ReplicaStatus | undefined, syncPercent?: number, etaSeconds?: number):
    void;
}

export class Replica implements ReplicaDriver {
  private switches: ReplicaSwitches = { fetch: false, replay: false };
  private source: FetchSource | undefined;
  private consistent = true;
  private inconsistentReason = "";
  private override: { status: ReplicaStatus; syncPercent?: number; etaSeconds?: number } |
    undefined;
  private pendingDefect: { sequence: number; offset: number; file: string; reason: string } |
    undefined;
  private repairing = false;
  private readonly fetchHolds = new Set<string>();
  private sample = { atMs: 0, fetched: 0, replayed: 0 };
  private rates = { fetch: 0, replay: 0 };

  private constructor(
    private readonly options: ReplicaOptions,
    readonly fetcher: Fetcher,
    readonly replayer: Replayer,
    private readonly device: BlockDevice,
    private readonly store: PositionStore,
  ) {}

  static async open(options: ReplicaOptions): Promise<Replica> {
    const { storage, directory } = options;
    await storage.files.makeDirectory(directory);
    let replica: Replica | undefined;
    const store = await PositionStore.open(storage, directory);
    const fetcher = new Fetcher({
      resource: options.resource, directory, storage, clock: options.clock,
      network: options.network, context: options.context,
      rateBytesPerSecondMax: options.fetchRateBytesPerSecondMax ?? 0,
      progressed: () => replica?.replayer.kick(), log: options.log,
      ...(store.current ? { firstSequence: store.current.sequence } : {}),
    });
    await fetcher.load();
    // Records beyond the disk's size at opening measure it again (the resource grew).
    const device = growingFileDevice(
      await openFileDevice(storage, options.disk, { directWrites: true }));
    const start = store.current ?? {
      sequence: fetcher.oldestSequence ?? 1,
      offsetBytes: logfileHeaderBytes,
    };
    const replayer = new Replayer({
      device, storage, clock: options.clock, store, source: fetcher,
      defective: (defect) => replica?.onDefect(defect),
      progressed: () => options.changed(), log: options.log,
    }, start);
    replica = new Replica(options, fetcher, replayer, device, store);
    if (options.inconsistentReason !== undefined) {
      replica.consistent = false;
      replica.inconsistentReason = options.inconsistentReason;
    }
    return replica;
  }

  /** Applies the desired switches and the fetch source (the designated primary). */
  configure(switches: ReplicaSwitches, source: FetchSource | undefined): void {
    const sourceChanged = source?.peer !== this.source?.peer ||
      JSON.stringify(source?.address) !== JSON.stringify(this.source?.address);
    const fetchChanged = switches.fetch !== this.switches.fetch;
    this.switches = switches;
    this.source = source;
    if (fetchChanged || sourceChanged) this.applyFetch();
    if (this.fetching && this.pendingDefect && !this.repairing) void this.repair();
    if (switches.replay && !this.pendingDefect) this.replayer.resume();
    if (!switches.replay) this.replayer.pause();
    this.options.changed();
  }

  /** Fetching runs when its switch is on and nothing holds it. */
  private get fetching(): boolean {
    return this.switches.fetch && this.fetchHolds.size === 0;
  }

  private applyFetch(): void {
    if (this.fetching) this.fetcher.start(this.source);
    else this.fetcher.stop();
  }

  holdFetch(reason: string): void {
    const before = this.fetching;
    this.fetchHolds.add(reason);
    if (before) this.applyFetch();
    this.options.changed();
  }

  releaseFetch(reason: string): void {
    if (!this.fetchHolds.delete(reason)) return;
    if (this.fetching) {
      this.applyFetch();
      if (this.pendingDefect && !this.repairing) void this.repair();
    }
    this.options.changed();
  }

  private onDefect(defect: { sequence: number; path: string; offset: number; reason: string }) {
    this.pendingDefect = {
      sequence: defect.sequence, offset: defect.offset, file: defect.path, reason: defect.reason,
    };
    this.options.changed();
    if (this.fetching) void this.repair();
  }

  /** Re-fetches a damaged local copy from the defective record on, then resumes replay. */
  private async repair(): Promise<void> {
    const defect = this.pendingDefect;
    if (!defect || this.repairing) return;
    this.repairing = true;
    this.options.changed();
    try {
      await this.fetcher.repair(defect.sequence, defect.offset);
      this.pendingDefect = undefined;
      if (this.switches.replay) this.replayer.resume();
    } finally {
      this.repairing = false;
      this.options.changed();
    }
  }

  markInconsistent(reason: string): void {
    this.consistent = false;
    this.inconsistentReason = reason;
    this.options.changed();
  }

  markConsistent(): void {
    this.consistent = true;
    this.inconsistentReason = "";
    this.options.changed();
  }

  overrideStatus(status: ReplicaStatus | undefined, syncPercent?: number, etaSeconds?: number) {
    this.override = status === undefined ? undefined : {
      status, ...(syncPercent === undefined ? {} : { syncPercent }),
      ...(etaSeconds === undefined ? {} : { etaSeconds }),
    };
    this.options.changed();
  }

  /** Periodic care (the service calls it every report): retries after operating errors. */
  maintain(): void {
    if (this.fetching) this.fetcher.retryAfterFailure();
    this.replayer.retryAfterFailure();
  }

  /** The current state, as published in resource/R/replication/HOST. */
  report(): ReplicationReport {
    this.sampleRates();
    const fetched = this.fetcher.fetchedEnd;
    const replayed = this.replayer.position;
    const fetchLagBytes = this.fetcher.state === "streaming" ? this.fetcher.pendingBytes
      : Math.max(this.fetcher.pendingBytes, this.distance(fetched, this.fetcher.sourceEnd));
    const defect = this.pendingDefect ?? (this.replayer.state === "defective"
      ? { file: "", offset: 0, reason: this.replayer.problem } : undefined);
    const held = [...this.fetchHolds].map((reason) => `fetch held: ${reason}`).join("; ");
    const problem = this.fetcher.problem || this.replayer.problem || this.inconsistentReason ||
      held;
    return {
      status: this.status(), consistent: this.consistent,
      logEnd: this.fetcher.sourceEnd ?? null, fetched, replayed,
      fetchLagBytes, replayLagBytes: this.distance(replayed, fetched) + fetchLagBytes,
      fetchRateBytesPerSecond: this.rates.fetch, replayRateBytesPerSecond: this.rates.replay,
      writeRateBytesPerSecond: 0, source: this.source?.peer ?? null,
      fetchState: this.fetcher.state, replayState: this.replayer.state,
      defect: defect ? { file: defect.file, offset: defect.offset, reason: defect.reason } : null,
      problem: problem || null,
      syncPercent: this.override?.syncPercent ?? null,
      syncEtaSeconds: this.override?.etaSeconds ?? null,
      emergency: this.override?.status === "emergency" || this.replayer.state === "gap",
      reportedMs: Math.floor(this.options.clock.nowMs()),
    };
  }

  private status(): ReplicaStatus {
    if (this.fetcher.state === "split-brain") return "split-brain";
    if (this.override) return this.override.status;
    if (this.replayer.state === "gap") return "emergency";
    if (this.repairing) return "repairing";
    if (this.pendingDefect || this.fetcher.state === "source-defective") return "defective";
    if (this.fetcher.state === "failed" || this.replayer.state === "failed") return "failed";
    if (!this.switches.replay) return "paused";
    const caughtUp = this.replayer.state === "caught-up" &&
      comparePositions(this.replayer.position, this.fetcher.fetchedEnd) >= 0 &&
      this.fetcher.pendingBytes === 0;
    return caughtUp ? "caught-up" : "replaying";
  }

  /** Log bytes from `from` to `to` in the local copies (0 when `to` is not ahead). */
  private distance(from: LogPosition, to: LogPosition | undefined): number {
    if (!to || comparePositions(to, from) <= 0) return 0;
    if (to.sequence === from.sequence) return to.offsetBytes - from.offsetBytes;
    let bytes = 0;
    for (let sequence = from.sequence; sequence < to.sequence; sequence++) {
      const length = this.fetcher.extent(sequence)?.lengthBytes ?? logfileHeaderBytes;
      bytes += Math.max(0, length - (sequence === from.sequence ? from.offsetBytes : 0));
    }
    return bytes + Math.max(0, to.offsetBytes - logfileHeaderBytes);
  }

  private sampleRates(): void {
    const now = this.options.clock.monotonicMs();
    const elapsedMs = now - this.sample.atMs;
    if (elapsedMs < 200) return;
    const fetched = this.fetcher.syncedBytesTotal;
    const replayed = this.replayer.appliedBytesTotal;
    if (this.sample.atMs > 0) {
      this.rates = {
        fetch: Math.round(((fetched - this.sample.fetched) * 1000) / elapsedMs),
        replay: Math.round(((replayed - this.sample.replayed) * 1000) / elapsedMs),
      };
    }
    this.sample = { atMs: now, fetched, replayed };
  }

  /** Stops fetch and replay, checkpoints, releases the disk. */
  async close(): Promise<void> {
    this.fetcher.stop();
    await this.replayer.stop();
    await this.device.close();
    await this.store.close();
  }
}
