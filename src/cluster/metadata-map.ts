/** The replicated metadata map: newest stamp wins, tombstones for deletions, a local change log. */
import { assert, assertCount } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { writerMayWrite } from "./keys.ts";
import { compareStamps, type LamportClock, type Stamp } from "./lamport.ts";

/** One key's newest known state; `value` undefined is a tombstone (the key was deleted). */
export interface Entry {
  readonly key: string;
  readonly value: unknown;
  readonly stamp: Stamp;
  /** Local sequence number: the order in which this host learned of the entry. */
  readonly seq: number;
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

export type ChangeListener = (entry: Entry) => void;

export class MetadataMap {
  private readonly entries = new Map<string, Entry>();
  /** Keys in ascending seq order; stale slots (key since rewritten) are skipped and compacted. */
  private order: { seq: number; key: string }[] = [];
  private seqLast = 0;
  private readonly listeners: ChangeListener[] = [];

  constructor(readonly host: string, readonly clock: LamportClock) {}

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
    for (const entry of this.entries.values()) {
      if (entry.value !== undefined && entry.key.startsWith(prefix)) found.push(entry);
    }
    return found.sort((left, right) => (left.key < right.key ? -1 : 1));
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
    if (!writerMayWrite(key, this.host)) {
      throw new MarsError("refused", `host ${this.host} may not write key '${key}'`);
    }
    const current = this.entries.get(key);
    if (current && current.value !== undefined && sameValue(current.value, value)) return current;
    const stamp: Stamp = { time: this.clock.tick(), host: this.host };
    if (current) assert(compareStamps(stamp, current.stamp) > 0, "a local write is newest");
    return this.store(key, value, stamp);
  }

  /**
   * A change learned from a peer: kept only when newer than what is here, and only when its
   * writer may write that key. Returns whether it changed the map.
   */
  apply(remote: WireEntry): boolean {
    assertCount(remote.time, "entry time");
    this.clock.observe(remote.time);
    if (!writerMayWrite(remote.key, remote.host)) return false;
    const stamp: Stamp = { time: remote.time, host: remote.host };
    const current = this.entries.get(remote.key);
    if (current && compareStamps(stamp, current.stamp) <= 0) return false;
    this.store(remote.key, remote.deleted ? undefined : remote.value, stamp);
    return true;
  }

  private store(key: string, value: unknown, stamp: Stamp): Entry {
    if (!this.entries.has(key) && this.entries.size >= entriesMax) {
      throw new MarsError("no-space", `the metadata map is full (${entriesMax} keys)`);
    }
    this.seqLast++;
    const entry: Entry = { key, value, stamp, seq: this.seqLast };
    this.entries.set(key, entry);
    this.order.push({ seq: entry.seq, key });
    this.compactOrder();
    for (const listener of this.listeners) listener(entry);
    return entry;
  }

  /** Removes a tombstone for good, once every member has seen it (see sync.ts). */
  purge(key: string): void {
    const entry = this.entries.get(key);
    assert(entry !== undefined && entry.value === undefined, "only tombstones are purged");
    this.entries.delete(key);
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

  /** Drops stale slots once they outnumber the live ones, keeping `order` O(entries). */
  private compactOrder(): void {
    if (this.order.length < 2 * this.entries.size + 64) return;
    this.order = this.order.filter((slot) => this.entries.get(slot.key)?.seq === slot.seq);
    assert(this.order.length === this.entries.size, "every entry has exactly one order slot");
  }

  /** Restores entries from a snapshot, keeping their seqs (peers' progress refers to them). */
  restore(entries: readonly WireEntry[], seqHigh: number): void {
    assert(this.entries.size === 0, "restore runs on an empty map");
    const sorted = [...entries].sort((left, right) => left.seq - right.seq);
    for (const wire of sorted) {
      assert(wire.seq <= seqHigh, "a restored seq is within the restored high mark");
      const value = wire.deleted ? undefined : wire.value;
      this.entries.set(wire.key, {
        key: wire.key, value, stamp: { time: wire.time, host: wire.host }, seq: wire.seq,
      });
      this.order.push({ seq: wire.seq, key: wire.key });
      this.clock.observe(wire.time);
    }
    this.seqLast = seqHigh;
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
