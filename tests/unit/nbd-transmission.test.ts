/** NBD transmission over an in-memory pair: data integrity, the window, bad input, isolation. */
import { describe, expect, test } from "bun:test";
import { createMemoryDevice } from "../../src/block/memory.ts";
import { BlockError, type BlockDevice } from "../../src/block/types.ts";
import { connectNbdDevice } from "../../src/nbd/client.ts";
import { Command, encodeRequest } from "../../src/nbd/protocol.ts";
import { NbdServer } from "../../src/nbd/server.ts";
import { requestsInFlightMax } from "../../src/nbd/transmission.ts";
import { connectionPair } from "../support/connection-pair.ts";

const deviceBytes = 8 << 20;

function serve(device: BlockDevice = createMemoryDevice(deviceBytes)) {
  const server = new NbdServer({ exports: [{ name: "disk", device }] });
  const open = async () => {
    const pair = connectionPair();
    const serverHandlers = server.accept(pair.server);
    const client = await connectNbdDevice(async (handlers) => {
      pair.attach(handlers, serverHandlers);
      return pair.client;
    });
    return { client, pair };
  };
  return { server, open };
}

function pattern(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let index = 0; index < length; index++) bytes[index] = (index * 31 + seed) & 0xff;
  return bytes;
}

describe("nbd transmission", () => {
  test("writes read back; trim and write-zeroes read as zeroes", async () => {
    const { open } = serve();
    const { client } = await open();
    await client.write(4096, pattern(65536, 7), { fua: true });
    const back = new Uint8Array(65536);
    await client.read(4096, back);
    expect(back).toEqual(pattern(65536, 7));
    await client.trim(4096, 4096, { fua: false });
    await client.writeZeroes(8192, 4096, { fua: false, noHole: true });
    await client.flush();
    await client.read(4096, back);
    expect(back.subarray(0, 8192)).toEqual(new Uint8Array(8192));
    expect(back.subarray(8192)).toEqual(pattern(65536, 7).subarray(8192));
  });

  test("many requests in flight, beyond the window, all complete correctly", async () => {
    const { open } = serve();
    const { client } = await open();
    const count = requestsInFlightMax * 3;
    await Promise.all(Array.from({ length: count }, (_, index) =>
      client.write(index * 4096, pattern(4096, index), { fua: false })));
    const reads = Array.from({ length: count }, () => new Uint8Array(4096));
    await Promise.all(reads.map((target, index) => client.read(index * 4096, target)));
    reads.forEach((target, index) => expect(target).toEqual(pattern(4096, index)));
  });

  test("replies leave out of order when the device completes out of order", async () => {
    const inner = createMemoryDevice(deviceBytes);
    let releaseSlow: () => void = () => {};
    const slow: BlockDevice = {
      ...inner,
      async read(offset, target) {
        if (offset === 0) await new Promise<void>((resolve) => (releaseSlow = resolve));
        await inner.read(offset, target);
      },
    };
    const { open } = serve(slow);
    const { client } = await open();
    const order: number[] = [];
    const first = client.read(0, new Uint8Array(512)).then(() => order.push(0));
    const second = client.read(4096, new Uint8Array(512)).then(() => order.push(1));
    await second;
    releaseSlow();
    await first;
    expect(order).toEqual([1, 0]);
  });

  test("out-of-range and oversized requests get errors; the connection lives on", async () => {
    const { open } = serve();
    const { client } = await open();
    const outOfRange = client.read(deviceBytes - 512, new Uint8Array(4096));
    expect(outOfRange).rejects.toMatchObject({ errno: "EINVAL" });
    await outOfRange.catch(() => {});
    const oversized = client.write(0, new Uint8Array(33 * 1024 * 1024), { fua: false });
    expect(oversized).rejects.toMatchObject({ errno: "EOVERFLOW" });
    await oversized.catch(() => {});
    await client.write(0, pattern(512, 3), { fua: false });
    const back = new Uint8Array(512);
    await client.read(0, back);
    expect(back).toEqual(pattern(512, 3));
  });

  test("device errors travel as their errno", async () => {
    const failing: BlockDevice = {
      ...createMemoryDevice(deviceBytes),
      async write() {
        throw new BlockError("ENOSPC", "full");
      },
    };
    const { open } = serve(failing);
    const { client } = await open();
    const write = client.write(0, new Uint8Array(512), { fua: false });
    expect(write).rejects.toMatchObject({ errno: "ENOSPC" });
    await write.catch(() => {});
  });

  test("a broken magic closes that connection only", async () => {
    const { open, server } = serve();
    const victim = await open();
    const survivor = await open();
    const bytes = encodeRequest({ flags: 0, type: Command.read, cookie: 9n, offset: 0,
      lengthBytes: 512 });
    bytes[0] = 0;
    victim.pair.client.write(bytes);
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(victim.pair.client.closed).toBe(true);
    await survivor.client.write(0, pattern(512, 5), { fua: false });
    expect(server.connectionCount).toBe(1);
  });

  test("shutdown waits for replies and flushes", async () => {
    let flushes = 0;
    const inner = createMemoryDevice(deviceBytes);
    const { open, server } = serve({ ...inner, flush: async () => void flushes++ });
    const { client } = await open();
    const write = client.write(0, pattern(4096, 1), { fua: false });
    await write;
    await server.shutdown();
    expect(flushes).toBe(1);
  });
});

describe("nbd payload buffers", () => {
  /** Counts what is out, so a leak (or a double release) shows. */
  function countingBuffers() {
    const out = new Set<Uint8Array>();
    return {
      out,
      acquired: 0,
      acquire(sizeBytes: number) {
        const buffer = new Uint8Array(sizeBytes);
        out.add(buffer);
        this.acquired++;
        return buffer;
      },
      release(buffer: Uint8Array) {
        expect(out.delete(buffer)).toBe(true);
      },
    };
  }

  test("every payload and read reply buffer goes back, also when a client vanishes", async () => {
    const buffers = countingBuffers();
    const server = new NbdServer({
      exports: [{ name: "disk", device: createMemoryDevice(deviceBytes) }], buffers,
    });
    const pair = connectionPair();
    const serverHandlers = server.accept(pair.server);
    const client = await connectNbdDevice(async (handlers) => {
      pair.attach(handlers, serverHandlers);
      return pair.client;
    });
    await client.write(0, pattern(1 << 20, 1), { fua: false });
    const back = new Uint8Array(1 << 20);
    await Promise.all([client.read(0, back), client.read(4096, new Uint8Array(4096))]);
    expect(back).toEqual(pattern(1 << 20, 1));
    // Half a large payload, then the client is gone: the collecting buffer must come back.
    pair.client.write(encodeRequest({ flags: 0, type: Command.write, cookie: 5n, offset: 0,
      lengthBytes: 1 << 20 }));
    pair.client.write(new Uint8Array(100_000));
    await new Promise((resolve) => setTimeout(resolve, 5));
    pair.client.destroy();
    await new Promise((resolve) => setTimeout(resolve, 5));
    expect(buffers.acquired).toBeGreaterThanOrEqual(4);
    expect(buffers.out.size).toBe(0);
  });
});
