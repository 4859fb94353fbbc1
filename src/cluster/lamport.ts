/** Lamport stamps: a total order on metadata changes across hosts whose clocks disagree. */
import { assert, assertCount } from "../lib/assert.ts";

/** A change's stamp: Lamport time (milliseconds-like, never decreasing) and the writing host. */
export interface Stamp {
  readonly time: number;
  readonly host: string;
}

/** Positive when `left` is newer than `right`; ties on time are broken by host name. */
export function compareStamps(left: Stamp, right: Stamp): number {
  if (left.time !== right.time) return left.time - right.time;
  if (left.host === right.host) return 0;
  return left.host > right.host ? 1 : -1;
}

/**
 * A hybrid Lamport clock: it follows wall time when that is ahead, and otherwise counts up, so
 * stamps stay readable as dates while every send and every write is strictly later than
 * anything this host has seen.
 */
export class LamportClock {
  private last: number;

  constructor(private readonly wallMs: () => number, restoredTime = 0) {
    assertCount(restoredTime, "restored Lamport time");
    this.last = restoredTime;
  }

  /** The newest time this host has issued or observed. */
  get time(): number {
    return this.last;
  }

  /** A fresh time, later than every time issued or observed before. */
  tick(): number {
    const next = Math.max(Math.floor(this.wallMs()), this.last + 1);
    assert(next > this.last, "Lamport time strictly increases");
    this.last = next;
    return next;
  }

  /** Moves the clock past a time seen in a peer's message. */
  observe(time: number): void {
    assertCount(time, "observed Lamport time");
    if (time > this.last) this.last = time;
  }
}
