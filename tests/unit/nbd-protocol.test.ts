/** The NBD codecs and the handshake, byte for byte, over an in-memory connection pair. */
import { describe, expect, test } from "bun:test";
import { createMemoryDevice, memoryCapabilities } from "../../src/block/memory.ts";
import {
  Command, decodeRequest, encodeRequest, Info, Option, optionMagic, OptionReply,
  TransmissionFlag, transmissionFlagsOf,
} from "../../src/nbd/protocol.ts";
import { NbdServer } from "../../src/nbd/server.ts";
import { connectionPair } from "../support/connection-pair.ts";

const settle = () => new Promise((resolve) => setTimeout(resolve, 5));

function option(code: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const bytes = new Uint8Array(16 + data.length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, optionMagic);
  view.setUint32(8, code);
  view.setUint32(12, data.length);
  bytes.set(data, 16);
  return bytes;
}

function uint32(value: number): Uint8Array {
  const bytes = new Uint8Array(4);
  new DataView(bytes.buffer).setUint32(0, value);
  return bytes;
}

function infoRequest(name: string, infos: number[]): Uint8Array {
  const text = new TextEncoder().encode(name);
  const bytes = new Uint8Array(4 + text.length + 2 + 2 * infos.length);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, text.length);
  bytes.set(text, 4);
  view.setUint16(4 + text.length, infos.length);
  infos.forEach((info, index) => view.setUint16(6 + text.length + 2 * index, info));
  return bytes;
}

/** Option replies parsed from raw server bytes (after the 18-byte greeting). */
type OptionReplyText = { option: number; type: number; data: Uint8Array };
function optionReplies(bytes: Uint8Array): OptionReplyText[] {
  const replies = [];
  let offset = 18;
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  while (offset + 20 <= bytes.length) {
    const length = view.getUint32(offset + 16);
    replies.push({
      option: view.getUint32(offset + 8), type: view.getUint32(offset + 12),
      data: bytes.subarray(offset + 20, offset + 20 + length),
    });
    offset += 20 + length;
  }
  return replies;
}

function rawSession(name = "disk") {
  const server = new NbdServer({
    exports: [{ name, description: "test disk", device: createMemoryDevice(1 << 20) }],
  });
  const pair = connectionPair(true);
  const received: Uint8Array[] = [];
  let closed = false;
  const handlers = server.accept(pair.server);
  pair.attach({
    data: (chunk) => received.push(chunk.slice()), drain() {}, closed: () => (closed = true),
  }, handlers);
  const all = () => {
    const total = received.reduce((sum, chunk) => sum + chunk.length, 0);
    const bytes = new Uint8Array(total);
    let offset = 0;
    for (const chunk of received) {
      bytes.set(chunk, offset);
      offset += chunk.length;
    }
    return bytes;
  };
  return { pair, all, isClosed: () => closed };
}

describe("nbd codecs", () => {
  test("a request survives encode and decode", () => {
    const request = { flags: 1, type: Command.write, cookie: 0x0102030405060708n, offset: 4096,
      lengthBytes: 512 };
    expect(decodeRequest(encodeRequest(request))).toEqual(request);
  });

  test("an offset beyond 2^53 decodes as out of range", () => {
    const bytes = encodeRequest({ flags: 0, type: 0, cookie: 1n, offset: 0, lengthBytes: 1 });
    new DataView(bytes.buffer).setBigUint64(16, 0xffff_ffff_ffff_0000n);
    expect(decodeRequest(bytes).offset).toBeUndefined();
  });

  test("transmission flags follow the declared capabilities", () => {
    const all = transmissionFlagsOf(memoryCapabilities, false);
    for (const flag of [TransmissionFlag.hasFlags, TransmissionFlag.sendFlush,
      TransmissionFlag.sendFua, TransmissionFlag.sendTrim, TransmissionFlag.sendWriteZeroes,
      TransmissionFlag.canMultiConnection]) expect(all & flag).toBe(flag);
    expect(all & TransmissionFlag.readOnly).toBe(0);
    expect(all & TransmissionFlag.sendDontFragment).toBe(0);
    const readOnly = transmissionFlagsOf({
      ...memoryCapabilities, writable: false, flush: false, fua: "none", trim: false,
      writeZeroes: false, multiConnection: false,
    }, true);
    expect(readOnly).toBe(TransmissionFlag.hasFlags | TransmissionFlag.readOnly |
      TransmissionFlag.sendDontFragment);
  });
});

describe("nbd handshake", () => {
  test("greets fixed-newstyle, lists the export, acks", async () => {
    const session = rawSession();
    session.pair.client.write(uint32(3));
    session.pair.client.write(option(Option.list));
    await settle();
    const bytes = session.all();
    const view = new DataView(bytes.buffer);
    expect(view.getBigUint64(0)).toBe(0x4e42444d41474943n);
    expect(view.getBigUint64(8)).toBe(optionMagic);
    expect(view.getUint16(16)).toBe(3);
    const replies = optionReplies(bytes);
    expect(replies.map((reply) => reply.type)).toEqual([OptionReply.server, OptionReply.ack]);
    expect(new TextDecoder().decode(replies[0]!.data.subarray(4, 8))).toBe("disk");
  });

  test("INFO reports size, flags and block sizes; unknown names and options are refused",
    async () => {
      const session = rawSession();
      session.pair.client.write(uint32(3));
      session.pair.client.write(option(Option.info, infoRequest("disk", [Info.blockSize])));
      session.pair.client.write(option(Option.info, infoRequest("nope", [])));
      session.pair.client.write(option(99));
      session.pair.client.write(option(Option.list, new Uint8Array(3)));
      await settle();
      const replies = optionReplies(session.all());
      expect(replies.map((reply) => reply.type)).toEqual([
        OptionReply.info, OptionReply.info, OptionReply.ack, OptionReply.errorUnknownExport,
        OptionReply.errorUnsupported, OptionReply.errorInvalid,
      ]);
      const exportInfo = new DataView(replies[0]!.data.slice().buffer);
      expect(exportInfo.getUint16(0)).toBe(Info.export);
      expect(exportInfo.getBigUint64(2)).toBe(1048576n);
      const sizes = new DataView(replies[1]!.data.slice().buffer);
      expect([sizes.getUint32(2), sizes.getUint32(6), sizes.getUint32(10)])
        .toEqual([1, 4096, 32 * 1024 * 1024]);
      expect(session.isClosed()).toBe(false);
    });

  test("ABORT is acknowledged and closes", async () => {
    const session = rawSession();
    session.pair.client.write(uint32(1));
    session.pair.client.write(option(Option.abort));
    await settle();
    expect(optionReplies(session.all()).map((reply) => reply.type)).toEqual([OptionReply.ack]);
    expect(session.isClosed()).toBe(true);
  });

  test("unknown client flags close the connection", async () => {
    const session = rawSession();
    session.pair.client.write(uint32(0x80));
    await settle();
    expect(session.isClosed()).toBe(true);
  });

  test("EXPORT_NAME answers size and flags, padded unless NO_ZEROES", async () => {
    for (const [clientFlags, length] of [[1, 18 + 10 + 124], [3, 18 + 10]] as const) {
      const session = rawSession();
      session.pair.client.write(uint32(clientFlags));
      session.pair.client.write(option(Option.exportName, new TextEncoder().encode("disk")));
      await settle();
      const bytes = session.all();
      expect(bytes.length).toBe(length);
      expect(new DataView(bytes.buffer).getBigUint64(18)).toBe(1048576n);
    }
  });

  test("an unknown export name in EXPORT_NAME closes the connection", async () => {
    const session = rawSession();
    session.pair.client.write(uint32(1));
    session.pair.client.write(option(Option.exportName, new TextEncoder().encode("other")));
    await settle();
    expect(session.isClosed()).toBe(true);
  });
});
