/** The engine's full sync: serves primaries' device views, runs syncs before a replica replays. */
import { keys } from "../cluster/keys.ts";
import { isMarsError, MarsError } from "../lib/errors.ts";
import type { BlockDevice } from "../block/types.ts";
import type { LogPosition } from "../log/position.ts";
import type { TimerHandle } from "../platform/types.ts";
import type { ReplicationReport } from "../replication/report.ts";
import type { ReplicationService, PrimaryLog } from "../replication/service.ts";
import type { Session, SessionHandlers } from "../transport/channel.ts";
import { ChunkBufferPool, syncChunkBytes } from "./chunk.ts";
import { askLogEnds } from "./log-end.ts";
import { serveSyncSession } from "./remote.ts";
import { SecondarySync, type SyncEffects } from "./secondary.ts";
import { localSyncSource } from "./source.ts";
import type { SyncPeer } from "./full-sync.ts";
import type { SyncMessage } from "./wire.ts";

/** How often a running replica is checked for a log that is gone at its source. */
export const logGoneCheckIntervalMs = 1000;
/** Sync sessions one source serves at once. */
export const sourceSessionsMax = 16;

export type SyncServiceOptions = SyncEffects;

/** wait-sync's targets: each resource's log end, asked of its primary when the call began. */
export interface LogEnds {
  readonly positions: Record<string, LogPosition>;
  /** Resources whose position is only the last one reported (the primary was not asked): why. */
  readonly estimated: Record<string, string>;
}

export class SyncService {
  private readonly sources = new Map<string, SyncPeer>();
  private readonly sessions = new Set<Session>();
  private readonly secondaries = new Map<string, SecondarySync>();

  /** Chunk buffers of every sync this engine serves or runs (page-aligned: no bounce copy). */
  private readonly buffers: ChunkBufferPool;
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(private readonly options: SyncServiceOptions) {
    const io = options.storage.io;
    this.buffers = new ChunkBufferPool(syncChunkBytes, io.allocateBuffer?.bind(io));
    this.schedule();
    options.map.onChange((entry) => {
      const [first, resource, third, owner, fifth] = entry.key.split("/");
      if (first !== "resource" || !resource || owner !== options.host) return;
      if (third === "invalidate" || (third === "todo" && fifth === "sync")) {
        this.secondaries.get(resource)?.changed();
      }
    });
  }

  /** Serves the primary's device view of `resource` to syncing members until the result runs. */
  attachPrimary(resource: string, view: BlockDevice, log: PrimaryLog): () => void {
    const source = localSyncSource({
      host: this.options.host, view, reads: "device-view",
      logEnd: () => log.logEnd, writebackPosition: () => log.writebackPosition,
      buffers: this.buffers,
    });
    this.sources.set(resource, {
      ...source,
      // In emergency mode writes reach no log: a catch-up replay could not repair the copy.
      begin: () => log.emergency === true
        ? Promise.reject(new MarsError("refused", `${resource} is in emergency mode`))
        : source.begin(),
    });
    return () => {
      this.sources.delete(resource);
    };
  }

  /** Handles an accepted "sync" session (a member syncing from this host). */
  serve(session: Session): SessionHandlers {
    if (this.sessions.size >= sourceSessionsMax) {
      session.send({ type: "sync-refused", code: "refused", reason: "too many sync sessions" });
      session.close();
      return { message: () => {}, closed: () => {} };
    }
    this.sessions.add(session);
    const receive = serveSyncSession(session, (resource) => {
      // A peer copies only the disks of resources it is a member of (DESIGN §3.7).
      if (this.options.map.get(keys.resourceMember(resource, session.peer)) === undefined) {
        return { code: "refused", reason: `${session.peer} is not a member of ${resource}` };
      }
      return this.sources.get(resource) ??
        { code: "refused", reason: `${this.options.host} does not serve ${resource}` };
    });
    this.options.log("info", "sync-session", { peer: session.peer });
    return {
      message: (message) => {
        if (message.type.startsWith("sync-")) receive(message as SyncMessage);
        else session.close();
      },
      closed: () => {
        this.sessions.delete(session);
      },
    };
  }

  /**
   * Replaces ReplicationService.attachSecondary: a member that never replayed, that has a sync
   * cursor, or that was invalidated copies blocks first; its replica opens after the copy,
   * replaying from the sync's start position, and reads inconsistent until it reached the end.
   */
  async attachSecondary(
    resource: string, disk: string, directory: string,
  ): Promise<() => Promise<void>> {
    const secondary = new SecondarySync({
      ...this.options, resource, disk, directory, chunkBuffers: this.buffers,
      syncsRunning: () => this.syncsRunning(),
      publish: (report) => this.options.map.set(keys.replication(resource, this.options.host),
        report),
    });
    this.secondaries.set(resource, secondary);
    await secondary.start();
    return async () => {
      this.secondaries.delete(resource);
      await secondary.stop();
    };
  }

  /**
   * Each resource's log end now: this host's own when it is the primary, else asked of the
   * primary (which makes its log durable to there first). When the primary cannot be asked,
   * `known` (the end last reported to this host) stands in, and `estimated` says why.
   */
  async logEnds(resources: readonly string[], known: Record<string, LogPosition>):
    Promise<LogEnds> {
    const positions: Record<string, LogPosition> = {};
    const estimated: Record<string, string> = {};
    const asked = new Map<string, string[]>();
    for (const resource of resources) {
      const primary = this.options.map.get(keys.primary(resource));
      const own = known[resource];
      if (typeof primary !== "string" || primary === "") {
        estimated[resource] = "no designated primary";
      } else if (primary !== this.options.host) {
        asked.set(primary, [...asked.get(primary) ?? [], resource]);
      } else if (own) positions[resource] = own;
      else estimated[resource] = "this host is the primary but does not export it yet";
    }
    // One question per primary, all primaries at once.
    await Promise.all([...asked].map(async ([primary, names]) => {
      const address = this.options.addressOf(primary);
      let answers: Map<string, LogPosition | string> | string;
      if (!address) answers = `no address for ${primary}`;
      else {
        answers = await askLogEnds(this.options, address, names).catch((error: unknown) => {
          if (!isMarsError(error)) throw error;
          return error.message;
        });
      }
      for (const resource of names) {
        const answer = typeof answers === "string" ? answers
          : answers.get(resource) ?? "the primary did not answer for it";
        if (typeof answer !== "string") positions[resource] = answer;
        else estimated[resource] = answer;
      }
    }));
    for (const resource of Object.keys(estimated)) {
      const last = known[resource];
      if (last) positions[resource] = last;
    }
    return { positions, estimated };
  }

  /** The replica of `resource` once it replays (for ReplicationService's other users). */
  replica(resource: string) {
    return this.options.replication.replica(resource);
  }

  /** Members (cluster-wide, from their published reports) copying blocks right now. */
  private syncsRunning(): number {
    let running = 0;
    for (const entry of this.options.map.list("resource/")) {
      if (!entry.key.includes("/replication/")) continue;
      const report = entry.value as Partial<ReplicationReport> | undefined;
      if (report?.status === "syncing" && report.syncPercent !== null) running++;
    }
    return running;
  }

  /** One timer wakes every secondary that watches its replica (thousands of resources). */
  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(logGoneCheckIntervalMs, () => {
      for (const secondary of this.secondaries.values()) secondary.changed();
      this.schedule();
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    for (const session of [...this.sessions]) session.close();
  }
}
