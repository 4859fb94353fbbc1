/** One outgoing channel to a peer, kept open forever: dial, authenticate, back off, dial again. */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import type { Address, Network, TimerHandle } from "../platform/types.ts";
import {
  dialChannel, type ChannelContext, type Session, type SessionHandlers,
} from "./channel.ts";
import type { ChannelKind } from "./messages.ts";

export interface BackoffOptions {
  readonly reconnectDelayMinMs: number;
  readonly reconnectDelayMaxMs: number;
}

export const defaultBackoff: BackoffOptions = {
  reconnectDelayMinMs: 100,
  reconnectDelayMaxMs: 5_000,
};

export interface PeerLinkEvents {
  /** The session is open; return its handlers (its `closed` is wrapped to reconnect). */
  opened(session: Session): SessionHandlers;
  /** A dial or handshake failed; the link retries after `delayMs`. */
  failed(reason: string, code: string, delayMs: number): void;
}

/** Doubles the delay after each failure up to the maximum, with ±25 % jitter from `random`. */
export function nextDelayMs(previousMs: number, options: BackoffOptions, jitter: number): number {
  assert(jitter >= 0 && jitter < 1, "jitter is a fraction");
  const doubled = previousMs === 0 ? options.reconnectDelayMinMs : previousMs * 2;
  const bounded = Math.min(doubled, options.reconnectDelayMaxMs);
  return Math.round(bounded * (0.75 + jitter / 2));
}

export class PeerLink {
  private session: Session | undefined;
  private timer: TimerHandle | undefined;
  private delayMs = 0;
  private stopped = false;
  private dialing = false;

  constructor(
    readonly peer: string,
    public address: Address,
    private readonly network: Network,
    private readonly context: ChannelContext,
    private readonly channel: ChannelKind,
    private readonly events: PeerLinkEvents,
    private readonly backoff: BackoffOptions = defaultBackoff,
  ) {}

  get open(): Session | undefined {
    return this.session;
  }

  start(): void {
    assert(!this.stopped, "a stopped link is not restarted");
    this.dial();
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.session?.close();
    this.session = undefined;
  }

  private dial(): void {
    if (this.stopped || this.dialing || this.session) return;
    this.dialing = true;
    let closedAlready = false;
    const attempt = dialChannel(this.network, this.address, this.context, this.channel,
      (session) => {
        const handlers = this.events.opened(session);
        return {
          ...handlers,
          closed: (reason) => {
            closedAlready = true;
            handlers.closed(reason);
            if (this.session === session) this.session = undefined;
            this.retryLater(reason, "closed");
          },
        };
      });
    attempt.then((session) => {
      this.dialing = false;
      this.delayMs = 0;
      if (this.stopped) return session.close();
      if (!closedAlready) this.session = session;
    }, (error: unknown) => {
      this.dialing = false;
      if (!isMarsError(error)) throw error;
      this.retryLater(error.message, error.code);
    });
  }

  private retryLater(reason: string, code: string): void {
    if (this.stopped) return;
    this.timer?.cancel();
    this.delayMs = nextDelayMs(this.delayMs, this.backoff,
      this.context.random.nextUint32() / 2 ** 32);
    this.events.failed(reason, code, this.delayMs);
    this.timer = this.context.clock.setTimer(this.delayMs, () => this.dial());
  }
}
