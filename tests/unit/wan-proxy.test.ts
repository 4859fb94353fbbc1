/** The test WAN proxy itself: it must add the delay, pace the bandwidth, reset and partition. */
import { afterEach, describe, expect, test } from "bun:test";
import type { Socket, TCPSocketListener } from "bun";
import { WanProxy } from "../support/wan-proxy.ts";

let echo: TCPSocketListener<undefined> | undefined;
let proxy: WanProxy | undefined;

afterEach(() => {
  proxy?.stop();
  echo?.stop(true);
});

function startEcho(): number {
  echo = Bun.listen({
    hostname: "127.0.0.1", port: 0,
    socket: { data: (socket, chunk) => void socket.write(chunk) },
  });
  return echo.port;
}

/** Connects through the proxy; resolves with the bytes echoed back once `expectBytes` arrived. */
async function roundTrip(port: number, payload: Uint8Array) {
  let received = 0;
  let closed = false;
  let done: () => void = () => {};
  const finished = new Promise<void>((resolve) => (done = resolve));
  const started = performance.now();
  const socket: Socket<undefined> = await Bun.connect({
    hostname: "127.0.0.1", port,
    socket: {
      data: (_, chunk) => {
        received += chunk.length;
        if (received >= payload.length) done();
      },
      close: () => {
        closed = true;
        done();
      },
    },
  });
  let offset = 0;
  while (offset < payload.length && !closed) {
    offset += Math.max(0, socket.write(payload.subarray(offset)));
    if (offset < payload.length) await Bun.sleep(1);
  }
  await Promise.race([finished, Bun.sleep(3000)]);
  socket.end();
  return { elapsedMs: performance.now() - started, received, closed };
}

describe("WAN proxy", () => {
  test("adds the configured round-trip time", async () => {
    proxy = new WanProxy({ targetPort: startEcho(), forward: { delayMs: 60 },
      backward: { delayMs: 60 } }).start();
    const result = await roundTrip(proxy.port, new Uint8Array(100).fill(7));
    expect(result.received).toBe(100);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(115);
  });

  test("paces a bandwidth limit", async () => {
    proxy = new WanProxy({ targetPort: startEcho(),
      forward: { bandwidthBytesPerSecond: 1_000_000 } }).start();
    const result = await roundTrip(proxy.port, new Uint8Array(300_000));
    expect(result.received).toBe(300_000);
    expect(result.elapsedMs).toBeGreaterThanOrEqual(250);
  });

  test("resets connections with the configured probability", async () => {
    proxy = new WanProxy({ targetPort: startEcho(), resetProbability: 1 }).start();
    const result = await roundTrip(proxy.port, new Uint8Array(10));
    expect(result.closed).toBe(true);
    expect(proxy.resets).toBe(1);
  });

  test("a partition refuses traffic until healed", async () => {
    proxy = new WanProxy({ targetPort: startEcho() }).start();
    proxy.setPartitioned(true);
    const cut = await roundTrip(proxy.port, new Uint8Array(10));
    expect(cut.received).toBe(0);
    proxy.setPartitioned(false);
    const healed = await roundTrip(proxy.port, new Uint8Array(10));
    expect(healed.received).toBe(10);
  });
});
