/** The replicated metadata map: newest stamp wins, tombstones for deletions, a local change log. */
import { assert, assertCount } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { compareStamps, type LamportClock, type Stamp } from "./lamport.ts";
import { localProblem, membershipResource, remoteVerdict } from "./membership.ts";

/** One key's newest known state; `value` undefined is a tombstone (the key was deleted). */
export interface Entry {
  readonly key: string;
  readonly value: unknown;
  readonly stamp: Stamp;
  /** Local sequence number: the order in which this host learned of the entry. */
  readonly seq: number;
  /**
   * This host's Lamport time when it learned the entry: a batch it sent with a later time held
   * it (a batch's time is a fresh tick). After a restart, the restored clock.
   */
  readonly learnedTime: number;
}

/** An entry as it travels between hosts and rests in the snapshot. */
export interface WireEntry {
  readonly key: string;
  readonly value?: unknown;
  readonly deleted?: boolean;
  readonly time: number;
  readonly host: string;
  readonly seq: number;
}

/** A bound on how many entries one host keeps (resources × keys per resource, with headroom). */
export const entriesMax = 1_000_000;

/** A bound on entries held aside (authors not known as members yet); the oldest go first. */
export const heldEntriesMax = 10_000;

/**
 * The bucket a key or a prefix falls in: `resource/R/` for a resource's keys, else the first
 * path segment with its slash; undefined for a prefix that spans buckets (`resource/`, `""`).
 */
export function bucketOf(keyOrPrefix: string): string | undefined {
  const first = keyOrPrefix.indexOf("/");
  if (first < 0) return undefined;
  if (!keyOrPrefix.startsWith("resource/")) return keyOrPrefix.slice(0, first + 1);
  const second = keyOrPrefix.indexOf("/", first + 1);
  return second < 0 ? undefined : keyOrPrefix.slice(0, second + 1);
}

export type ChangeListener = (entry: Entry) => void;
/** A remote entry refused or held aside by the membership rule (src/cluster/membership.ts). */
export type RefusalListener = (entry: WireEntry, reason: string, held: boolean) => void;

export class MetadataMap {
  private readonly entries = new Map<string, Entry>();
  /** Keys per bucket (`bucketOf`), so a prefix lookup reads one resource's keys, not all. */
  private readonly buckets = new Map<string, Set<string>>();
  /** Keys in ascending seq order; stale slots (key since rewritten) are skipped and compacted. */
  private order: { seq: number; key: string }[] = [];
  private seqLast = 0;
  private readonly listeners: ChangeListener[] = [];
  private readonly refusalListeners: RefusalListener[] = [];
  /** Remote entries whose author is not known as a member of their resource, per key. */
  /** Per key, per author: its newest entry (an older one of another author may yet qualify). */
  private readonly held = new Map<string, Map<string, WireEntry>>();
  private heldCount = 0;
  /** Entries that are tombstones (so an idle host need not scan its map for them). */
  private tombstones = 0;

  constructor(readonly host: string, readonly clock: LamportClock) {}

  /** How many entries are tombstones (deleted keys not yet purged). */
  get tombstoneCount(): number {
    return this.tombstones;
  }

  /** The highest local sequence number issued: every entry has seq ≤ this. */
  get seqHigh(): number {
    return this.seqLast;
  }

  get size(): number {
    return this.entries.size;
  }

  onChange(listener: ChangeListener): void {
    this.listeners.push(listener);
  }

  onRefusal(listener: RefusalListener): void {
    this.refusalListeners.push(listener);
  }

  /** The live value of `key`, or undefined when absent or deleted. */
  get(key: string): unknown {
    return this.entries.get(key)?.value;
  }

  entry(key: string): Entry | undefined {
    return this.entries.get(key);
  }

  /** Live entries whose key starts with `prefix`, in key order. */
  list(prefix: string): Entry[] {
    const found: Entry[] = [];
    const bucket = bucketOf(prefix);
    if (bucket !== undefined) {
      for (const key of this.buckets.get(bucket) ?? []) {
        const entry = this.entries.get(key)!;
        if (entry.value !== undefined && key.startsWith(prefix)) found.push(entry);
      }
    } else {
      for (const entry of this.entries.values()) {
        if (entry.value !== undefined && entry.key.startsWith(prefix)) found.push(entry);
      }
    }
    return found.sort((left, right) => (left.key < right.key ? -1 : 1));
  }

  /** Every entry, tombstones too, whose key starts with `prefix` (one bucket when it can). */
  entriesUnder(prefix: string): Entry[] {
    const bucket = bucketOf(prefix);
    const found: Entry[] = [];
    const candidates = bucket === undefined ? this.entries.keys() : this.buckets.get(bucket);
    for (const key of candidates ?? []) {
      if (key.startsWith(prefix)) found.push(this.entries.get(key)!);
    }
    return found;
  }

  private indexKey(key: string): void {
    // A valid key always has a bucket; anything else (never written) is found by full scans.
    const bucket = bucketOf(key) ?? key;
    let keys = this.buckets.get(bucket);
    if (!keys) {
      keys = new Set();
      this.buckets.set(bucket, keys);
    }
    keys.add(key);
  }

  private unindexKey(key: string): void {
    const bucket = bucketOf(key) ?? key;
    const keys = this.buckets.get(bucket);
    keys?.delete(key);
    if (keys?.size === 0) this.buckets.delete(bucket);
  }

  /** Every entry including tombstones (for views, snapshots and purging). */
  all(): IterableIterator<Entry> {
    return this.entries.values();
  }

  /** A local write, stamped now by this host. Writing an equal live value is a no-op. */
  set(key: string, value: unknown): Entry {
    assert(value !== undefined, "set takes a value; delete writes tombstones");
    return this.writeLocal(key, value);
  }

  /** A local deletion: a tombstone, so that older copies elsewhere cannot bring the key back. */
  delete(key: string): Entry | undefined {
    if (this.entries.get(key)?.value === undefined) return undefined;
    return this.writeLocal(key, undefined);
  }

  private writeLocal(key: string, value: unknown): Entry {
    const problem = localProblem((name) => this.entries.get(name), key, this.host,
      value === undefined);
    if (problem) {
      throw new MarsError("refused", `host ${this.host} may not write key '${key}': ${problem}`);
    }
    const current = this.entries.get(key);
    if (current && current.value !== undefined && sameValue(current.value, value)) return current;
    const time = this.clock.tick();
    const stamp: Stamp = { time, host: this.host };
    if (current) assert(compareStamps(stamp, current.stamp) > 0, "a local write is newest");
    return this.store(key, value, stamp, time);
  }

  /**
   * A change learned from a peer: kept only when newer than what is here and when its author
   * may write that key (src/cluster/membership.ts). An author not known as a member of the
   * key's resource is held aside and judged again when its membership changes. Returns
   * whether it changed the map.
   */
  apply(remote: WireEntry): boolean {
    assertCount(remote.time, "entry time");
    this.clock.observe(remote.time);
    const stamp: Stamp = { time: remote.time, host: remote.host };
    const current = this.entries.get(remote.key);
    if (current && compareStamps(stamp, current.stamp) <= 0) return false;
    const verdict = remoteVerdict((name) => this.entries.get(name), remote.key, stamp,
      remote.deleted === true);
    if (verdict.kind === "refuse") {
      for (const listener of this.refusalListeners) listener(remote, verdict.reason, false);
      return false;
    }
    if (verdict.kind === "hold") {
      this.hold(remote, verdict.reason);
      return false;
    }
    this.store(remote.key, remote.deleted ? undefined : remote.value, stamp, this.clock.time);
    return true;
  }

  /** Keeps the newest held entry per key and author; reports it the first time it is held. */
  private hold(remote: WireEntry, reason: string): void {
    const known = this.held.get(remote.key)?.get(remote.host);
    if (known && known.time >= remote.time) return;
    if (!known && this.heldCount >= heldEntriesMax) {
      const [oldestKey, byAuthor] = this.held.entries().next().value!;
      const oldest = byAuthor.values().next().value!;
      this.unhold(oldestKey, oldest.host);
      const reason = `dropped: more than ${heldEntriesMax} entries held`;
      for (const listener of this.refusalListeners) listener(oldest, reason, false);
    }
    this.keepHeld(remote);
    for (const listener of this.refusalListeners) listener(remote, reason, true);
  }

  private keepHeld(entry: WireEntry): void {
    let byAuthor = this.held.get(entry.key);
    if (!byAuthor) {
      byAuthor = new Map();
      this.held.set(entry.key, byAuthor);
    }
    if (!byAuthor.has(entry.host)) this.heldCount++;
    byAuthor.set(entry.host, entry);
    assert(this.heldCount <= heldEntriesMax, "held entries stay within their bound");
  }

  private unhold(key: string, author: string): void {
    const byAuthor = this.held.get(key);
    if (!byAuthor?.delete(author)) return;
    this.heldCount--;
    if (byAuthor.size === 0) this.held.delete(key);
  }

  /** Judges again every held entry about `resource` (a membership of it changed). */
  private releaseHeld(resource: string): void {
    const prefix = `resource/${resource}/`;
    const candidates = this.heldEntries().filter((entry) => entry.key.startsWith(prefix));
    for (const entry of candidates) {
      // Released or replaced meanwhile (a release may release more, recursively).
      if (this.held.get(entry.key)?.get(entry.host) !== entry) continue;
      this.unhold(entry.key, entry.host);
      const stamp = { time: entry.time, host: entry.host };
      const current = this.entries.get(entry.key);
      if (current && compareStamps(stamp, current.stamp) <= 0) continue;
      const verdict = remoteVerdict((name) => this.entries.get(name), entry.key, stamp,
        entry.deleted === true);
      if (verdict.kind === "hold") this.keepHeld(entry);
      if (verdict.kind !== "accept") continue;
      this.store(entry.key, entry.deleted ? undefined : entry.value, stamp, this.clock.time);
    }
  }

  /** Entries held aside by the membership rule (persisted with the map). */
  heldEntries(): WireEntry[] {
    const all: WireEntry[] = [];
    for (const byAuthor of this.held.values()) all.push(...byAuthor.values());
    return all;
  }

  private store(key: string, value: unknown, stamp: Stamp, learnedTime: number): Entry {
    if (!this.entries.has(key) && this.entries.size >= entriesMax) {
      throw new MarsError("no-space", `the metadata map is full (${entriesMax} keys)`);
    }
    this.seqLast++;
    const entry: Entry = { key, value, stamp, seq: this.seqLast, learnedTime };
    this.countTombstone(this.entries.get(key), -1);
    this.countTombstone(entry, 1);
    this.entries.set(key, entry);
    this.indexKey(key);
    this.order.push({ seq: entry.seq, key });
    this.compactOrder();
    for (const held of this.held.get(key)?.values() ?? []) {
      // Superseded: it could never win any more.
      if (compareStamps({ time: held.time, host: held.host }, stamp) <= 0) {
        this.unhold(key, held.host);
      }
    }
    for (const listener of this.listeners) listener(entry);
    const resource = membershipResource(key);
    if (resource !== undefined && this.heldCount > 0) this.releaseHeld(resource);
    return entry;
  }

  /** Removes a tombstone for good, once every member has seen it (see sync.ts). */
  purge(key: string): void {
    const entry = this.entries.get(key);
    assert(entry !== undefined && entry.value === undefined, "only tombstones are purged");
    this.countTombstone(entry, -1);
    this.entries.delete(key);
    this.unindexKey(key);
    this.compactOrder();
  }

  /**
   * Entries with local seq above `afterSeq`, oldest first, at most `limit`; `throughSeq` is
   * the seq up to which the answer is complete. Cost grows with the changes, not the map.
   */
  changesSince(afterSeq: number, limit: number): { entries: WireEntry[]; throughSeq: number } {
    assert(limit > 0, "a batch holds at least one entry");
    let low = 0;
    let high = this.order.length;
    while (low < high) {
      const middle = (low + high) >>> 1;
      if (this.order[middle]!.seq <= afterSeq) low = middle + 1;
      else high = middle;
    }
    const entries: WireEntry[] = [];
    let throughSeq = Math.max(afterSeq, 0);
    for (let index = low; index < this.order.length; index++) {
      const slot = this.order[index]!;
      const entry = this.entries.get(slot.key);
      if (!entry || entry.seq !== slot.seq) continue;
      if (entries.length === limit) return { entries, throughSeq };
      entries.push(toWire(entry));
      throughSeq = entry.seq;
    }
    return { entries, throughSeq: Math.max(throughSeq, this.seqLast) };
  }

  private countTombstone(entry: Entry | undefined, change: 1 | -1): void {
    if (entry === undefined || entry.value !== undefined) return;
    this.tombstones += change;
    assert(this.tombstones >= 0, "tombstones are counted once each");
  }

  /** Drops stale slots once they outnumber the live ones, keeping `order` O(entries). */
  private compactOrder(): void {
    if (this.order.length < 2 * this.entries.size + 64) return;
    this.order = this.order.filter((slot) => this.entries.get(slot.key)?.seq === slot.seq);
    assert(this.order.length === this.entries.size, "every entry has exactly one order slot");
  }

  /**
   * Restores entries from a snapshot, keeping their seqs (peers' progress refers to them), and
   * the entries held aside. Call after the clock has observed the snapshot's time.
   */
  restore(entries: readonly WireEntry[], seqHigh: number, held: readonly WireEntry[] = []): void {
    assert(this.entries.size === 0, "restore runs on an empty map");
    const sorted = [...entries].sort((left, right) => left.seq - right.seq);
    for (const wire of sorted) this.clock.observe(wire.time);
    const learnedTime = this.clock.time;
    for (const wire of sorted) {
      assert(wire.seq <= seqHigh, "a restored seq is within the restored high mark");
      const value = wire.deleted ? undefined : wire.value;
      const entry = {
        key: wire.key, value, stamp: { time: wire.time, host: wire.host }, seq: wire.seq,
        learnedTime,
      };
      this.countTombstone(this.entries.get(wire.key), -1);
      this.countTombstone(entry, 1);
      this.entries.set(wire.key, entry);
      this.order.push({ seq: wire.seq, key: wire.key });
      this.indexKey(wire.key);
    }
    this.seqLast = seqHigh;
    for (const wire of held.slice(-heldEntriesMax)) this.keepHeld(wire);
  }
}

export function toWire(entry: Entry): WireEntry {
  const base = { key: entry.key, time: entry.stamp.time, host: entry.stamp.host, seq: entry.seq };
  return entry.value === undefined ? { ...base, deleted: true } : { ...base, value: entry.value };
}

/** Structural equality for the plain values stored in the map. */
export function sameValue(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== "object" || typeof right !== "object" || !left || !right) return false;
  return JSON.stringify(left) === JSON.stringify(right);
}
