/** wait-sync's exact targets: asks a primary for its log ends now, over a short `sync` session. */
import { assert } from "../lib/assert.ts";
import { isMarsError, MarsError } from "../lib/errors.ts";
import type { LogPosition } from "../log/position.ts";
import type { Address, Clock, Network } from "../platform/types.ts";
import { dialChannel, type ChannelContext, type Session } from "../transport/channel.ts";
import { logEndResourcesMax, type LogEndAnswer, type SyncMessage } from "./wire.ts";

/** How long the question may take (dial, handshake, the source's flush, the answer). */
export const logEndQueryTimeoutMs = 3000;

export interface LogEndQueryEffects {
  readonly network: Network;
  readonly clock: Clock;
  readonly context: ChannelContext;
}

/**
 * The log ends of `resources` at the moment their primary answers, each made durable there
 * first (so a replica can fetch up to it): one session and one round trip for all of them. A
 * resource the primary cannot answer for gets its reason instead. Fails with a MarsError when
 * the primary cannot be asked in time.
 */
export async function askLogEnds(
  effects: LogEndQueryEffects, address: Address, resources: readonly string[],
  timeoutMs = logEndQueryTimeoutMs,
): Promise<Map<string, LogPosition | string>> {
  assert(resources.length <= logEndResourcesMax, "one question names at most so many resources");
  let settle: { resolve(ends: LogEndAnswer[]): void; reject(error: MarsError): void } | undefined;
  const answered = new Promise<LogEndAnswer[]>((resolve, reject) => {
    settle = { resolve, reject };
  });
  const timer = effects.clock.setTimer(timeoutMs, () => settle?.reject(
    new MarsError("timeout", `the primary did not tell its log end within ${timeoutMs} ms`)));
  let session: Session | undefined;
  let finished = false;
  dialChannel(effects.network, address, effects.context, "sync", () => ({
    message: (message) => {
      const reply = message as SyncMessage;
      if (reply.type === "sync-log-ends") settle?.resolve(reply.ends);
      else if (reply.type === "sync-refused") {
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
    else opened.send({ type: "sync-log-end", resources: [...resources] });
  }, (error: unknown) => settle?.reject(isMarsError(error) ? error
    : new MarsError("peer-unreachable", `asking the primary for its log end: ${error}`)));
  try {
    const ends = new Map<string, LogPosition | string>();
    for (const end of await answered) {
      ends.set(end.resource, "code" in end ? `the primary: ${end.reason}`
        : { sequence: end.sequence, offsetBytes: end.offset });
    }
    return ends;
  } finally {
    finished = true;
    timer.cancel();
    session?.close();
  }
}
