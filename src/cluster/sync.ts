/** Delta exchange of the metadata map between hosts, and purging of tombstones all have seen. */
import { assert, assertCount } from "../lib/assert.ts";
import { keys, parseKey } from "./keys.ts";
import { tombstoneRetained } from "./membership.ts";
import type { Entry, MetadataMap, WireEntry } from "./metadata-map.ts";

/** The most entries one batch carries; a bigger backlog goes out in several batches. */
export const batchEntriesMax = 512;

/** What one host sends another: its entries with seq in (fromSeq, throughSeq]. */
export interface Batch {
  /** Names the sender's map; a new incarnation (a re-created home) restarts the count. */
  readonly incarnation: string;
  readonly fromSeq: number;
  readonly throughSeq: number;
  /** The sender's newest seq when it sent this; throughSeq === seqHigh means "that's all". */
  readonly seqHigh: number;
  /** The sender's Lamport time at sending: later than every entry the sender held. */
  readonly time: number;
  readonly entries: readonly WireEntry[];
}

/** What this host knows about its progress through one peer's map. */
export interface PeerProgress {
  incarnation: string;
  /** Every entry of the peer's map with seq ≤ this has been applied here. */
  receivedThroughSeq: number;
  /** The peer's Lamport time at which this host last held all of the peer's map. */
  caughtUpTime: number;
}

export interface SyncOptions {
  /** A tombstone is purged no earlier than this long (Lamport ms) after it was written. */
  readonly tombstoneRetentionMs: number;
}

export class MetadataSync {
  readonly progress = new Map<string, PeerProgress>();

  constructor(
    readonly map: MetadataMap,
    readonly incarnation: string,
    private readonly options: SyncOptions,
  ) {
    assertCount(options.tombstoneRetentionMs, "tombstone retention");
  }

  /** Where a pull from `peer` starts, and under which incarnation. */
  pullFrom(peer: string): { incarnation: string; afterSeq: number } {
    const known = this.progress.get(peer);
    return { incarnation: known?.incarnation ?? "", afterSeq: known?.receivedThroughSeq ?? 0 };
  }

  /** The batch answering a pull for entries after `afterSeq` of our map. */
  batchAfter(afterSeq: number, incarnation: string): Batch {
    const from = incarnation === this.incarnation ? afterSeq : 0;
    const { entries, throughSeq } = this.map.changesSince(from, batchEntriesMax);
    const time = this.map.clock.tick();
    return {
      incarnation: this.incarnation, fromSeq: from, throughSeq,
      seqHigh: this.map.seqHigh, time, entries,
    };
  }

  /**
   * Applies a batch from `peer`. Gaps (a lost batch) and stale duplicates are ignored; returns
   * false when a gap means the peer must be asked again from our position.
   */
  receive(peer: string, batch: Batch): boolean {
    assert(batch.fromSeq <= batch.throughSeq, "a batch covers a non-empty or empty range");
    assert(batch.entries.length <= batchEntriesMax, "a batch respects its entry limit");
    this.map.clock.observe(batch.time);
    let known = this.progress.get(peer);
    if (!known || known.incarnation !== batch.incarnation) {
      if (batch.fromSeq !== 0) return false;
      known = { incarnation: batch.incarnation, receivedThroughSeq: 0, caughtUpTime: 0 };
      this.progress.set(peer, known);
    }
    if (batch.fromSeq > known.receivedThroughSeq) return false;
    for (const entry of batch.entries) {
      assert(entry.seq > batch.fromSeq, "batch entries lie inside its range");
      assert(entry.seq <= batch.throughSeq, "batch entries lie inside its range");
      if (entry.seq <= known.receivedThroughSeq) continue;
      this.map.apply(entry);
    }
    known.receivedThroughSeq = Math.max(known.receivedThroughSeq, batch.throughSeq);
    if (known.receivedThroughSeq >= batch.seqHigh) {
      known.caughtUpTime = Math.max(known.caughtUpTime, batch.time);
    }
    return true;
  }

  /** Cluster members as this host knows them (live `member/*` keys). */
  members(): string[] {
    return this.map.list("member/").map((entry) => entry.key.slice("member/".length));
  }

  /** Whether this host holds a tombstone to purge (only then is publishing progress worth it). */
  holdsTombstones(): boolean {
    if (this.map.tombstoneCount === 0) return false;
    for (const entry of this.map.all()) if (this.purgeCandidate(entry)) return true;
    return false;
  }

  /** A tombstone that may go once all have it (membership ones stay while their resource does). */
  private purgeCandidate(entry: Entry): boolean {
    return entry.value === undefined &&
      !tombstoneRetained((key) => this.map.entry(key), entry.key);
  }

  /** Publishes, as our own key, up to which time we hold every peer's changes. */
  publishCaughtUp(): void {
    const value: Record<string, number> = {};
    for (const [peer, known] of this.progress) value[peer] = known.caughtUpTime;
    this.map.set(keys.caughtUp(this.map.host), value);
  }

  /** Purges every tombstone that all members are known to hold; returns how many. */
  purgeTombstones(): number {
    const members = this.members();
    const purgeable: string[] = [];
    for (const entry of this.map.all()) {
      if (!this.purgeCandidate(entry)) continue;
      const age = this.map.clock.time - entry.stamp.time;
      if (age < this.options.tombstoneRetentionMs) continue;
      if (members.every((member) => this.memberHolds(member, entry))) {
        purgeable.push(entry.key);
      }
    }
    for (const key of purgeable) this.map.purge(key);
    return purgeable.length;
  }

  /**
   * Whether `member` holds `entry` (or newer), and we have already read past that point in the
   * member's own stream, so no older copy from it can still reach us. The member holds it when
   * it has all of the writer's changes up to the entry's time, or all of our map from after we
   * learned it: the second needs no word from the writer, which may have left the cluster.
   */
  private memberHolds(member: string, entry: Entry): boolean {
    const { stamp } = entry;
    if (member === this.map.host) return true;
    const fromMember = this.progress.get(member)?.caughtUpTime ?? 0;
    if (member === stamp.host) return fromMember >= stamp.time;
    const published = this.map.entry(keys.caughtUp(member));
    if (!published || typeof published.value !== "object" || published.value === null) {
      return false;
    }
    const progress = published.value as Record<string, unknown>;
    const fromWriter = progress[stamp.host];
    const fromUs = progress[this.map.host];
    const holds = (typeof fromWriter === "number" && fromWriter >= stamp.time) ||
      (typeof fromUs === "number" && fromUs > entry.learnedTime);
    return holds && fromMember >= published.stamp.time;
  }
}

/** Whether a key names a valid entry (used to reject malformed batches early). */
export function isKnownKey(key: string): boolean {
  return parseKey(key) !== undefined;
}
