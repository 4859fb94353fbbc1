/** One timer for every log stream waiting at the tail: wakes the streams whose source grew. */
import { comparePositions, type LogPosition } from "../log/position.ts";
import type { Clock, TimerHandle } from "../platform/types.ts";
import { assert } from "../lib/assert.ts";

/** How often waiting streams' sources are looked at (latency added to an idle stream). */
export const tailPollIntervalMs = 5;
/** Streams waiting at once (one per fetching peer and resource). */
export const tailWaitersMax = 65_536;

interface Waiter {
  readonly durableEnd: () => LogPosition;
  readonly seen: LogPosition;
  readonly wake: () => void;
}

/**
 * Instead of a timer per idle stream (thousands of resources), one timer checks every waiting
 * stream's source; it runs only while someone waits.
 */
export class TailWatcher {
  private readonly waiters = new Set<Waiter>();
  private timer: TimerHandle | undefined;

  constructor(private readonly clock: Clock) {}

  /** Calls `wake` once `durableEnd()` moved on from what it is now; the result cancels. */
  wait(durableEnd: () => LogPosition, wake: () => void): () => void {
    const waiter = { durableEnd, seen: durableEnd(), wake };
    this.waiters.add(waiter);
    assert(this.waiters.size <= tailWaitersMax, "tail waiters within their limit");
    this.timer ??= this.clock.setTimer(tailPollIntervalMs, () => this.tick());
    return () => {
      this.waiters.delete(waiter);
    };
  }

  private tick(): void {
    this.timer = undefined;
    for (const waiter of [...this.waiters]) {
      if (comparePositions(waiter.durableEnd(), waiter.seen) === 0) continue;
      this.waiters.delete(waiter);
      waiter.wake();
    }
    if (this.waiters.size > 0) {
      this.timer = this.clock.setTimer(tailPollIntervalMs, () => this.tick());
    }
  }

  stop(): void {
    this.timer?.cancel();
    this.timer = undefined;
    this.waiters.clear();
  }
}
