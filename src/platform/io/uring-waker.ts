/** Learns of io_uring completions on the event loop by reading the ring's eventfd; never blocks. */
// The kernel bumps the eventfd counter whenever it posts a completion. A pending read of it is an
// ordinary poll in Bun's event loop, so the JS thread sleeps in epoll like for any socket. That
// pending read also keeps the process alive, so the waker disarms itself after a short idle
// spell; re-arming costs ~20 µs, paid only once per busy period.
import { assert } from "../../lib/assert.ts";

/** Idle time after which the pending eventfd read is dropped, letting the process exit. */
export const wakerIdleDisarmMs = 50;
/** Reads of the eventfd that ended on their own in a row before we call it a platform fault. */
const unexpectedEndsMax = 16;

/** The part of a stream reader the waker uses. */
interface EventReader {
  read(): Promise<{ done: boolean }>;
  cancel(): Promise<void>;
}

export class CompletionWaker {
  private reader: EventReader | undefined;
  private idleTimer: ReturnType<typeof setTimeout> | undefined;
  private stopped = false;
  private unexpectedEnds = 0;

  constructor(
    private readonly eventFd: number,
    private readonly onWake: () => void,
  ) {}

  /** Makes sure a read is pending: call before any submission that expects a completion. */
  arm(): void {
    assert(!this.stopped, "a stopped waker is not armed again");
    this.cancelIdleTimer();
    if (this.reader !== undefined) return;
    const reader = Bun.file(this.eventFd).stream().getReader();
    this.reader = reader;
    void this.listen(reader);
  }

  /** Nothing is in flight: disarm after the idle spell unless work arrives first. */
  idle(): void {
    if (this.reader === undefined || this.idleTimer !== undefined) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = undefined;
      void this.disarm();
    }, wakerIdleDisarmMs);
    this.idleTimer.unref();
  }

  /** For good; resolves once the runtime let go of the eventfd, so it may be closed. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.cancelIdleTimer();
    await this.disarm();
  }

  private async disarm(): Promise<void> {
    const reader = this.reader;
    this.reader = undefined;
    if (reader !== undefined) await reader.cancel().catch(() => undefined);
  }

  private cancelIdleTimer(): void {
    if (this.idleTimer === undefined) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = undefined;
  }

  private async listen(reader: EventReader): Promise<void> {
    for (;;) {
      let done: boolean;
      try {
        ({ done } = await reader.read());
      } catch {
        done = true;
      }
      if (this.reader !== reader) return;
      if (done) {
        // The stream ended without our asking: read afresh so no completion goes unnoticed.
        this.unexpectedEnds++;
        assert(this.unexpectedEnds <= unexpectedEndsMax, "the eventfd stays readable");
        this.reader = undefined;
        this.arm();
        this.onWake();
        return;
      }
      this.unexpectedEnds = 0;
      this.onWake();
    }
  }
}
