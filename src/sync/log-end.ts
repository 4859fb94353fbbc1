/** wait-sync's exact target: asks the primary for its log end now, over a short `sync` session. */
import { isMarsError, MarsError } from "../lib/errors.ts";
import type { LogPosition } from "../log/position.ts";
import type { Address, Clock, Network } from "../platform/types.ts";
import { dialChannel, type ChannelContext, type Session } from "../transport/channel.ts";
import type { SyncMessage } from "./wire.ts";

/** How long the question may take (dial, handshake, the source's flush, the answer). */
export const logEndQueryTimeoutMs = 3000;

export interface LogEndQueryEffects {
  readonly network: Network;
  readonly clock: Clock;
  readonly context: ChannelContext;
}

/**
 * The primary's log end at the moment it answers, made durable there first (so a replica can
 * fetch up to it). Fails with a MarsError when the primary cannot be asked in time.
 */
export async function askLogEnd(
  effects: LogEndQueryEffects, address: Address, resource: string,
  timeoutMs = logEndQueryTimeoutMs,
): Promise<LogPosition> {
  let settle: { resolve(end: LogPosition): void; reject(error: MarsError): void } | undefined;
  const answered = new Promise<LogPosition>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const timer = effects.clock.setTimer(timeoutMs, () => settle?.reject(
    new MarsError("timeout", `the primary did not tell its log end within ${timeoutMs} ms`)));
  let session: Session | undefined;
  let finished = false;
  dialChannel(effects.network, address, effects.context, "sync", () => ({
    message: (message) => {
      const reply = message as SyncMessage;
      if (reply.type === "sync-ended") {
        settle?.resolve({ sequence: reply.sequence, offsetBytes: reply.offset });
      } else if (reply.type === "sync-refused") {
        settle?.reject(new MarsError("refused", `the primary refused: ${reply.reason}`));
      } else {
        settle?.reject(new MarsError("protocol", `unexpected '${reply.type}'`));
      }
    },
    closed: (reason) => settle?.reject(new MarsError("peer-unreachable",
      `the primary closed the connection: ${reason}`)),
  })).then((opened) => {
    session = opened;
    // Answered or timed out meanwhile: a late session only needs closing.
    if (finished) opened.close();
    else opened.send({ type: "sync-log-end", resource });
  }, (error: unknown) => settle?.reject(isMarsError(error) ? error
    : new MarsError("peer-unreachable", `asking the primary for its log end: ${error}`)));
  try {
    return await answered;
  } finally {
    finished = true;
    timer.cancel();
    session?.close();
  }
}
