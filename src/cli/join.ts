/** join-cluster's conversation with a member: authenticate, announce this host, copy the map. */
import { MarsError } from "../lib/errors.ts";
import { LamportClock } from "../cluster/lamport.ts";
import { MetadataMap, toWire } from "../cluster/metadata-map.ts";
import { MetadataSync } from "../cluster/sync.ts";
import type { EngineEffects } from "../engine/engine.ts";
import type { Address } from "../platform/types.ts";
import { homeFormat, type MetadataSnapshot } from "../store/home.ts";
import { dialChannel } from "../transport/channel.ts";
import type { Message } from "../transport/messages.ts";

/** A member that does not finish the join within this long is given up on. */
export const joinTimeoutMs = 30_000;

export interface JoinRequest {
  readonly effects: EngineEffects;
  readonly peer: Address;
  readonly cluster: string;
  readonly secret: Uint8Array;
  readonly host: string;
  readonly advertised: string;
}

export async function joinThroughPeer(request: JoinRequest) {
  const { effects } = request;
  const lamport = new LamportClock(() => effects.clock.nowMs());
  const map = new MetadataMap(request.host, lamport);
  const sync = new MetadataSync(map, "joining", { tombstoneRetentionMs: 0 });
  let settle: { resolve(): void; reject(error: Error): void } | undefined;
  const done = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
  const context = {
    credentials: { cluster: request.cluster, host: request.host, secret: request.secret },
    random: effects.random, clock: effects.clock, lamport,
  };
  const session = await dialChannel(effects.network, request.peer, context, "join", (opened) => ({
    message: (message: Message) => {
      if (message.type === "refusal") {
        settle?.reject(new MarsError(message.code === "refused" ? "refused" : "protocol",
          `${opened.peer} refused the join: ${message.reason}`));
      } else if (message.type === "joined") {
        opened.send({ type: "pull", incarnation: "", afterSeq: 0 });
      } else if (message.type === "batch") {
        sync.receive(opened.peer, message.batch);
        if (message.batch.throughSeq >= message.batch.seqHigh) settle?.resolve();
      }
    },
    closed: (reason) => settle?.reject(new MarsError("peer-unreachable",
      `the connection closed before the join finished: ${reason}`)),
  }));
  session.send({ type: "join", host: request.host, address: request.advertised });
  const timer = effects.clock.setTimer(joinTimeoutMs, () =>
    settle?.reject(new MarsError("timeout", "the member did not finish the join in time")));
  try {
    await done;
  } finally {
    timer.cancel();
    session.close();
  }
  const snapshot: MetadataSnapshot = {
    format: homeFormat, lamportTime: lamport.time, seqHigh: map.seqHigh,
    entries: [...map.all()].map(toWire),
    peers: Object.fromEntries(sync.progress), held: map.heldEntries(),
  };
  const members = map.list("member/").length;
  const resources = map.list("resource/").filter((entry) => entry.key.endsWith("/size")).length;
  return { snapshot, peer: session.peer, members, resources };
}
