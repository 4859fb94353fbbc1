/** A Clock for seeded simulations: time moves only when the test advances it. */
import type { Clock, TimerHandle } from "../../src/platform/types.ts";

interface PendingTimer {
  readonly dueMs: number;
  readonly order: number;
  readonly callback: () => void;
  cancelled: boolean;
}

export class SimulatedClock implements Clock {
  private currentMs = 0;
  private timers: PendingTimer[] = [];
  private timerCount = 0;

  /** `epochMs` is the wall time at simulated time zero (a fixed date keeps runs reproducible). */
  constructor(private readonly epochMs = 1_767_225_600_000) {}

  nowMs(): number {
    return this.epochMs + this.currentMs;
  }

  monotonicMs(): number {
    return this.currentMs;
  }

  setTimer(delayMs: number, callback: () => void): TimerHandle {
    const timer: PendingTimer = {
      dueMs: this.currentMs + Math.max(0, delayMs), order: this.timerCount++, callback,
      cancelled: false,
    };
    this.timers.push(timer);
    return { cancel: () => { timer.cancelled = true; } };
  }

  /** Timers not yet fired or cancelled. */
  get pendingTimers(): number {
    return this.timers.filter((timer) => !timer.cancelled).length;
  }

  /** Moves time forward by `durationMs`, firing due timers in (due time, creation) order. */
  advance(durationMs: number): void {
    const targetMs = this.currentMs + durationMs;
    for (;;) {
      this.timers = this.timers.filter((timer) => !timer.cancelled);
      let next: PendingTimer | undefined;
      for (const timer of this.timers) {
        if (timer.dueMs > targetMs) continue;
        if (!next || timer.dueMs < next.dueMs || (timer.dueMs === next.dueMs &&
          timer.order < next.order)) next = timer;
      }
      if (!next) break;
      this.currentMs = Math.max(this.currentMs, next.dueMs);
      next.cancelled = true;
      next.callback();
    }
    this.currentMs = targetMs;
  }
}
