// The authenticated channel over real loopback sockets: who gets in, who gets only a refusal.
import { afterEach, expect, test } from "bun:test";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { isMarsError } from "../../../src/lib/errors.ts";
import { systemClock } from "../../../src/platform/clock.ts";
import { bunNetwork } from "../../../src/platform/network.ts";
import { systemRandom } from "../../../src/platform/random.ts";
import type { Listener } from "../../../src/platform/types.ts";
import {
  acceptChannel, dialChannel, type ChannelContext, type Session,
} from "../../../src/transport/channel.ts";
import type { Message } from "../../../src/transport/messages.ts";

const secret = new Uint8Array(32).fill(7);
const listeners: Listener[] = [];
afterEach(() => { for (const listener of listeners.splice(0)) listener.close(); });

function context(host: string, options: { secret?: Uint8Array; cluster?: string } = {}) {
  return {
    credentials: { cluster: options.cluster ?? "c1", host, secret: options.secret ?? secret },
    random: systemRandom, clock: systemClock, lamport: new LamportClock(() => Date.now()),
  } satisfies ChannelContext;
}

async function server() {
  const received: Message[] = [];
  const refusals: string[] = [];
  const listener = await bunNetwork.listen({ kind: "tcp", host: "127.0.0.1", port: 0 },
    (connection) => acceptChannel(connection, context("server"), {
      admit: () => undefined,
      opened: (session: Session) => ({
        message: (message) => { received.push(message); session.send({ type: "heartbeat" }); },
        closed: () => {},
      }),
      refused: (_remote, reason) => refusals.push(reason),
    }));
  listeners.push(listener);
  return { address: listener.address, received, refusals };
}

test("the right secret opens a session both ways", async () => {
  const { address, received } = await server();
  const answers: Message[] = [];
  const session = await dialChannel(bunNetwork, address, context("client"), "metadata", () => ({
    message: (message) => answers.push(message), closed: () => {},
  }));
  expect(session.peer).toBe("server");
  session.send({ type: "heartbeat" });
  for (let wait = 0; wait < 50 && answers.length === 0; wait++) await Bun.sleep(10);
  expect(received.map((message) => message.type)).toEqual(["heartbeat"]);
  expect(answers.map((message) => message.type)).toEqual(["heartbeat"]);
  session.close();
});

test("a wrong secret and another cluster are refused and logged", async () => {
  const { address, received, refusals } = await server();
  const attempt = (options: { secret?: Uint8Array; cluster?: string }) =>
    dialChannel(bunNetwork, address, context("client", options), "metadata", () => ({
      message: () => {}, closed: () => {},
    })).then(() => "opened", (error) => (isMarsError(error) ? error.code : String(error)));
  expect(await attempt({ secret: new Uint8Array(32).fill(8) })).toBe("wrong-secret");
  expect(await attempt({ cluster: "c2" })).toBe("cluster-mismatch");
  expect(received).toEqual([]);
  expect(refusals).toEqual(["authentication failed", "the cluster id does not match"]);
});

test("raw garbage gets nothing but a refusal", async () => {
  const { address, refusals } = await server();
  const chunks: Uint8Array[] = [];
  let closed = false;
  const connection = await bunNetwork.connect(address, {
    data: (chunk) => chunks.push(chunk.slice()), drain: () => {}, closed: () => { closed = true; },
  });
  connection.write(new TextEncoder().encode("GET / HTTP/1.0\r\n\r\n"));
  for (let wait = 0; wait < 100 && !closed; wait++) await Bun.sleep(10);
  expect(closed).toBe(true);
  expect(refusals.length).toBe(1);
  const text = new TextDecoder().decode(Buffer.concat(chunks));
  expect(text).toContain("refusal");
});
