/** This host's member of the cluster: serves its map to peers, pulls theirs, keeps it on disk. */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import { checkName, keys, nameProblem } from "../cluster/keys.ts";
import { LamportClock } from "../cluster/lamport.ts";
import { MetadataMap, toWire, type WireEntry } from "../cluster/metadata-map.ts";
import { MetadataSync } from "../cluster/sync.ts";
import type { Address, Listener, Network, Random, Clock, TimerHandle } from "../platform/types.ts";
import type { Home, Identity } from "../store/home.ts";
import { homeFormat } from "../store/home.ts";
import {
  acceptChannel, type ChannelContext, type Session, type SessionHandlers,
} from "../transport/channel.ts";
import type { Message } from "../transport/messages.ts";
import { PeerLink, type BackoffOptions } from "../transport/peer-link.ts";
import type { Logger } from "./logger.ts";

export interface ClusterTiming extends BackoffOptions {
  readonly heartbeatIntervalMs: number;
  /** A peer heard from within this window counts as alive. */
  readonly livenessWindowMs: number;
  /** How often progress is published and tombstones are purged (only while any exist). */
  readonly purgeIntervalMs: number;
  readonly tombstoneRetentionMs: number;
}

export const defaultTiming: ClusterTiming = {
  heartbeatIntervalMs: 1_000, livenessWindowMs: 5_000, purgeIntervalMs: 2_000,
  tombstoneRetentionMs: 10_000, reconnectDelayMinMs: 100, reconnectDelayMaxMs: 5_000,
};

/** Serving sessions at once (peers dialing us); more are refused. */
export const servingSessionsMax = 4096;

interface Serving {
  readonly session: Session;
  incarnation: string;
  /** Entries up to this seq of our map were sent; undefined until the peer pulls. */
  sentThroughSeq: number | undefined;
  blocked: boolean;
}

export interface ClusterEffects {
  readonly clock: Clock;
  readonly random: Random;
  readonly network: Network;
}

/** "host:port" or "[v6]:port" → a TCP address. */
export function parseListen(text: string): Address {
  const match = /^\[?([^\]]*?)\]?:(\d+)$/.exec(text);
  const port = Number(match?.[2]);
  if (!match || !Number.isInteger(port) || port < 0 || port > 65_535) {
    throw new Error(`not ADDRESS:PORT: '${text}'`);
  }
  return { kind: "tcp", host: match[1]!, port };
}

export class ClusterNode {
  readonly lamport: LamportClock;
  readonly map: MetadataMap;
  readonly sync: MetadataSync;
  readonly context: ChannelContext;
  private readonly links = new Map<string, PeerLink>();
  private readonly serving = new Set<Serving>();
  /** Monotonic time each peer was last heard from, on any channel. */
  readonly lastHeardMs = new Map<string, number>();
  private listener: Listener | undefined;
  private readonly timers: TimerHandle[] = [];
  private pushScheduled = false;
  private saving: Promise<void> | undefined;
  private saveAgain = false;
  /** Every change with seq up to this is saved (in the snapshot or the journal). */
  private savedThroughSeq = 0;
  /** The next save writes a full snapshot: the journal cannot say what changed. */
  private snapshotDue = false;
  private stopped = false;
  /** Serves accepted "log" sessions (set by the replication service). */
  logSessions: ((session: Session) => SessionHandlers) | undefined;
  /** Serves accepted "sync" sessions (set by the sync service, src/sync). */
  syncSessions: ((session: Session) => SessionHandlers) | undefined;

  constructor(
    readonly identity: Identity,
    secret: Uint8Array,
    private readonly home: Home,
    private readonly effects: ClusterEffects,
    private readonly logger: Logger,
    private readonly timing: ClusterTiming = defaultTiming,
  ) {
    this.lamport = new LamportClock(() => effects.clock.nowMs());
    this.map = new MetadataMap(identity.host, this.lamport);
    this.sync = new MetadataSync(this.map, identity.incarnation, {
      tombstoneRetentionMs: timing.tombstoneRetentionMs,
    });
    this.context = {
      credentials: { cluster: identity.cluster, host: identity.host, secret },
      random: effects.random, clock: effects.clock, lamport: this.lamport,
    };
    this.map.onChange((entry) => {
      this.schedulePush();
      this.requestSave();
      if (entry.key.startsWith("member/")) this.reconcileLinks();
    });
    this.map.onRefusal((entry, reason, held) => {
      this.logger.log("warn", "metadata-refused", {
        key: entry.key, author: entry.host, time: entry.time, reason, held,
      });
      if (held) this.requestSave();
    });
  }

  /** Loads the persisted map and progress (a fresh home has none). */
  async load(): Promise<void> {
    const snapshot = await this.home.readMetadata();
    if (!snapshot) return;
    this.lamport.observe(snapshot.lamportTime);
    this.map.restore(snapshot.entries, snapshot.seqHigh, snapshot.held);
    for (const [peer, progress] of Object.entries(snapshot.peers)) {
      this.sync.progress.set(peer, { ...progress });
    }
    this.savedThroughSeq = this.map.seqHigh;
  }

  async start(): Promise<Address> {
    const address = parseListen(this.identity.listen);
    this.listener = await this.effects.network.listen(address,
      (connection) => acceptChannel(connection, this.context, {
        admit: (hello) => this.admit(hello.host, hello.channel),
        opened: (session) => this.serve(session),
        refused: (remote, reason) =>
          this.logger.log("warn", "peer-refused", { remote, reason }),
      }));
    this.reconcileLinks();
    this.every(this.timing.heartbeatIntervalMs, () => this.heartbeat());
    this.every(this.timing.purgeIntervalMs, () => this.purge());
    return this.listener.address;
  }

  private every(intervalMs: number, action: () => void): void {
    const run = () => {
      if (this.stopped) return;
      action();
      this.timers.push(this.effects.clock.setTimer(intervalMs, run));
      if (this.timers.length > 16) this.timers.splice(0, this.timers.length - 16);
    };
    this.timers.push(this.effects.clock.setTimer(intervalMs, run));
  }

  async stop(): Promise<void> {
    this.stopped = true;
    for (const timer of this.timers) timer.cancel();
    for (const link of this.links.values()) link.stop();
    for (const serving of this.serving) serving.session.close();
    this.listener?.close();
    await this.flush();
  }

  private admit(host: string, channel: string) {
    if ((channel === "log" && !this.logSessions) || (channel === "sync" && !this.syncSessions)) {
      return { code: "refused" as const, reason: `channel '${channel}' is not served yet` };
    }
    if (nameProblem(host)) return { code: "protocol" as const, reason: "invalid host name" };
    if (host === this.identity.host) return { code: "refused" as const, reason: "same host" };
    if ((channel === "metadata" || channel === "log" || channel === "sync") &&
      this.map.get(keys.member(host)) === undefined) {
      return { code: "unknown-host" as const, reason: `host '${host}' is not a member` };
    }
    if (this.serving.size >= servingSessionsMax) {
      return { code: "refused" as const, reason: "too many sessions" };
    }
    return undefined;
  }

  private serve(session: Session): SessionHandlers {
    if (session.channel === "log" && this.logSessions) return this.logSessions(session);
    if (session.channel === "sync" && this.syncSessions) return this.syncSessions(session);
    const serving: Serving = {
      session, incarnation: "", sentThroughSeq: undefined, blocked: false,
    };
    this.serving.add(serving);
    this.logger.log("info", "peer-accepted", { peer: session.peer, channel: session.channel });
    return {
      message: (message: Message) => this.onServingMessage(serving, message),
      drain: () => {
        serving.blocked = false;
        this.pushTo(serving, false);
      },
      closed: (reason: string) => {
        this.serving.delete(serving);
        this.logger.log("debug", "peer-session-closed", { peer: session.peer, reason });
      },
    };
  }

  private onServingMessage(serving: Serving, message: Message): void {
    this.heard(serving.session.peer);
    if (message.type === "pull") {
      serving.incarnation = message.incarnation;
      serving.sentThroughSeq = message.afterSeq;
      this.pushTo(serving, true);
    } else if (message.type === "join" && serving.session.channel === "join") {
      this.acceptJoin(serving, message.host, message.address);
    } else if (message.type !== "heartbeat") {
      this.logger.log("warn", "peer-unexpected-message", {
        peer: serving.session.peer, type: message.type,
      });
      serving.session.close();
    }
  }

  private acceptJoin(serving: Serving, host: string, address: string): void {
    try {
      checkName("host", host);
      parseListen(address);
    } catch (error) {
      serving.session.send({ type: "refusal", code: "usage", reason: String(error) });
      return serving.session.close();
    }
    const known = this.map.get(keys.member(host)) as { address?: string } | undefined;
    if (host !== serving.session.peer || (known && known.address !== address &&
      this.isAlive(host))) {
      const reason = `host '${host}' is already a live member at ${known?.address}`;
      serving.session.send({ type: "refusal", code: "refused", reason });
      return serving.session.close();
    }
    this.map.set(keys.member(host), { address });
    this.logger.log("info", "host-joined", { host, address });
    void this.flush().then(() => serving.session.send({ type: "joined" }));
  }

  /** Sends our changes after what the peer has; `force` sends even an empty batch (heartbeat). */
  private pushTo(serving: Serving, force: boolean): void {
    if (serving.sentThroughSeq === undefined || serving.blocked) return;
    for (;;) {
      const batch = this.sync.batchAfter(serving.sentThroughSeq, serving.incarnation);
      if (batch.entries.length === 0 && !force) return;
      force = false;
      serving.incarnation = batch.incarnation;
      serving.sentThroughSeq = batch.throughSeq;
      const accepted = serving.session.send({ type: "batch", batch });
      if (!accepted) serving.blocked = true;
      if (!accepted || batch.throughSeq >= batch.seqHigh) return;
    }
  }

  private schedulePush(): void {
    if (this.pushScheduled || this.stopped) return;
    this.pushScheduled = true;
    this.effects.clock.setTimer(0, () => {
      this.pushScheduled = false;
      for (const serving of this.serving) this.pushTo(serving, false);
    });
  }

  private heartbeat(): void {
    for (const serving of this.serving) this.pushTo(serving, true);
    for (const link of this.links.values()) link.open?.send({ type: "heartbeat" });
  }

  private purge(): void {
    if (!this.sync.holdsTombstones()) return;
    this.sync.publishCaughtUp();
    const purged = this.sync.purgeTombstones();
    if (purged > 0) {
      this.logger.log("info", "tombstones-purged", { count: purged });
      this.requestFullSave();
    }
  }

  private heard(peer: string): void {
    this.lastHeardMs.set(peer, this.effects.clock.monotonicMs());
  }

  isAlive(peer: string): boolean {
    const heard = this.lastHeardMs.get(peer);
    if (heard === undefined) return false;
    return this.effects.clock.monotonicMs() - heard <= this.timing.livenessWindowMs;
  }

  /** One outgoing link per member other than us; links to departed members stop. */
  private reconcileLinks(): void {
    if (this.stopped || !this.listener) return;
    const members = new Set(this.sync.members());
    // A host that left the cluster stops dialing; it keeps its map as a read-only witness.
    const departed = !members.has(this.identity.host);
    for (const [peer, link] of this.links) {
      if (departed || !members.has(peer)) {
        link.stop();
        this.links.delete(peer);
      }
    }
    if (departed) return;
    for (const peer of members) {
      if (peer === this.identity.host) continue;
      const value = this.map.get(keys.member(peer)) as { address?: unknown };
      if (typeof value?.address !== "string") continue;
      const address = parseListen(value.address);
      const existing = this.links.get(peer);
      if (existing) {
        existing.address = address;
        continue;
      }
      this.startLink(peer, address);
    }
  }

  private startLink(peer: string, address: Address): void {
    const link = new PeerLink(peer, address, this.effects.network, this.context, "metadata", {
      opened: (session) => {
        assert(session.peer === peer, "the peer we dialed answered");
        this.logger.log("info", "peer-connected", { peer, remote: session.remote });
        this.heard(peer);
        session.send({ type: "pull", ...this.pullArguments(peer) });
        return {
          message: (message) => this.onLinkMessage(session, message),
          closed: (reason) => this.logger.log("info", "peer-disconnected", { peer, reason }),
        };
      },
      failed: (reason, code, delayMs) => this.logger.log(
        code === "wrong-secret" || code === "cluster-mismatch" ? "warn" : "debug",
        "peer-connect-failed", { peer, reason, retryMs: delayMs },
      ),
    }, this.timing);
    this.links.set(peer, link);
    link.start();
  }

  private pullArguments(peer: string) {
    const { incarnation, afterSeq } = this.sync.pullFrom(peer);
    return { incarnation, afterSeq };
  }

  private onLinkMessage(session: Session, message: Message): void {
    this.heard(session.peer);
    if (message.type !== "batch") return;
    const before = this.sync.progress.get(session.peer)?.receivedThroughSeq;
    if (!this.sync.receive(session.peer, message.batch)) {
      session.send({ type: "pull", ...this.pullArguments(session.peer) });
    }
    // Map changes save themselves; progress alone is saved when it moved (not per heartbeat).
    if (this.sync.progress.get(session.peer)?.receivedThroughSeq !== before) this.requestSave();
  }

  /** Persists the map soon; several requests coalesce into one write. */
  requestSave(): void {
    if (this.saving) {
      this.saveAgain = true;
      return;
    }
    this.saving = this.save().finally(() => {
      this.saving = undefined;
      if (this.saveAgain) {
        this.saveAgain = false;
        this.requestSave();
      }
    });
  }

  /**
   * Appends what changed since the last save to the home's journal (a full snapshot when a
   * tombstone was purged, a save failed or the journal has grown long).
   */
  private async save(): Promise<void> {
    const full = this.snapshotDue;
    this.snapshotDue = false;
    const changes = {
      lamportTime: this.lamport.time, seqHigh: this.map.seqHigh,
      peers: structuredClone(Object.fromEntries(this.sync.progress)),
      entries: full ? [] : changesAfter(this.map, this.savedThroughSeq),
      held: this.map.heldEntries(),
    };
    this.savedThroughSeq = this.map.seqHigh;
    const snapshot = () => ({
      format: homeFormat, lamportTime: changes.lamportTime, seqHigh: changes.seqHigh,
      entries: [...this.map.all()].map(toWire), peers: changes.peers, held: changes.held,
    });
    try {
      if (full) await this.home.writeMetadata(snapshot());
      else await this.home.saveMetadata(changes, snapshot);
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.snapshotDue = true; // the next save writes everything
      this.logger.log("error", "metadata-save-failed", { reason: error.message });
    }
  }

  /** A save that cannot be told as changes (a purge removes entries): a full snapshot. */
  private requestFullSave(): void {
    this.snapshotDue = true;
    this.requestSave();
  }

  /** Resolves once everything changed so far is on disk. */
  async flush(): Promise<void> {
    this.requestSave();
    while (this.saving) await this.saving;
  }
}

/** Changes a batch of the journal holds at most per read of the map (it reads on). */
const changesPerReadMax = 4096;

/** The newest entry of every key changed after `afterSeq`, in seq order. */
function changesAfter(map: MetadataMap, afterSeq: number): WireEntry[] {
  const found: WireEntry[] = [];
  let through = afterSeq;
  while (through < map.seqHigh) {
    const batch = map.changesSince(through, changesPerReadMax);
    found.push(...batch.entries);
    assert(batch.throughSeq > through, "reading changes makes progress");
    through = batch.throughSeq;
  }
  return found;
}
