/** A minimal NBD client presented as a BlockDevice: for tests, conformance runs and tooling. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type BlockErrno,
} from "../block/types.ts";
import type { Connection, ConnectionHandlers } from "../platform/types.ts";
import { ByteQueue } from "./byte-queue.ts";
import {
  clientFlagFixedNewstyle, clientFlagNoZeroes, Command, CommandFlag, encodeRequest, encodeString,
  Info, Option, optionMagic, optionReplyHeaderBytes, OptionReply, simpleReplyHeaderBytes,
  simpleReplyMagic, TransmissionFlag, WireError,
} from "./protocol.ts";

/** Requests one client keeps outstanding before `send` waits. */
export const clientRequestsInFlightMax = 64;
const replyQueueBytesMax = 80 * 1024 * 1024;

type Connect = (handlers: ConnectionHandlers) => Promise<Connection>;

interface Pending {
  readonly resolve: () => void;
  readonly reject: (error: Error) => void;
  readonly readTarget: Uint8Array | undefined;
}

/** Connects, negotiates with NBD_OPT_GO (simple replies) and returns the export as a device. */
export async function connectNbdDevice(
  connect: Connect, exportName = "",
): Promise<BlockDevice & { readonly transmissionFlags: number }> {
  const client = new NbdClient();
  client.connection = await connect(client.handlers);
  await client.negotiate(exportName);
  return client.device();
}

const wireToErrno = new Map<number, BlockErrno>(
  Object.entries(WireError).map(([name, value]) => [value, name as BlockErrno]),
);

class NbdClient {
  connection!: Connection;
  private readonly queue = new ByteQueue(replyQueueBytesMax);
  private waiter: (() => void) | undefined;
  private failure: Error | undefined;
  private readonly pending = new Map<bigint, Pending>();
  private nextCookie = 1n;
  private slotWaiters: Array<() => void> = [];
  private negotiated = false;
  sizeBytes = 0;
  transmissionFlags = 0;
  blockSizes = { minimumBytes: 1, preferredBytes: 4096, maximumBytes: 32 * 1024 * 1024 };

  readonly handlers: ConnectionHandlers = {
    data: (chunk) => {
      assert(this.queue.push(chunk), "server replies fit the client's queue");
      if (this.negotiated) this.parseReplies();
      else this.waiter?.();
    },
    drain: () => {},
    closed: (error) => {
      this.failure = new MarsError("peer-unreachable", `nbd connection closed${
        error ? `: ${error.message}` : ""}`);
      for (const entry of this.pending.values()) entry.reject(this.failure);
      this.pending.clear();
      this.waiter?.();
    },
  };

  private async bytes(count: number): Promise<Uint8Array> {
    while (this.queue.length < count) {
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => (this.waiter = resolve));
      this.waiter = undefined;
    }
    return this.queue.take(count);
  }

  async negotiate(exportName: string): Promise<void> {
    const greeting = new DataView((await this.bytes(18)).slice().buffer);
    if (greeting.getBigUint64(8) !== optionMagic) {
      throw new MarsError("protocol", "server is not fixed-newstyle NBD");
    }
    const flags = new Uint8Array(4);
    new DataView(flags.buffer).setUint32(0, clientFlagFixedNewstyle | clientFlagNoZeroes);
    this.connection.write(flags);
    const name = encodeString(exportName);
    const data = new Uint8Array(4 + name.length + 2 + 2);
    const view = new DataView(data.buffer);
    view.setUint32(0, name.length);
    data.set(name, 4);
    view.setUint16(4 + name.length, 1);
    view.setUint16(6 + name.length, Info.blockSize);
    this.connection.write(encodeOption(Option.go, data));
    for (;;) {
      const header = new DataView((await this.bytes(optionReplyHeaderBytes)).slice().buffer);
      const type = header.getUint32(12);
      const payload = (await this.bytes(header.getUint32(16))).slice();
      if (type === OptionReply.ack) break;
      if (type !== OptionReply.info) {
        throw new MarsError("protocol", `server refused GO: reply 0x${type.toString(16)}`);
      }
      this.readInfo(new DataView(payload.buffer));
    }
    this.negotiated = true;
    this.parseReplies();
  }

  private readInfo(info: DataView): void {
    if (info.getUint16(0) === Info.export) {
      this.sizeBytes = Number(info.getBigUint64(2));
      this.transmissionFlags = info.getUint16(10);
    } else if (info.getUint16(0) === Info.blockSize) {
      this.blockSizes = {
        minimumBytes: info.getUint32(2), preferredBytes: info.getUint32(6),
        maximumBytes: info.getUint32(10),
      };
    }
  }

  private parseReplies(): void {
    while (this.queue.length >= simpleReplyHeaderBytes) {
      const header = new DataView(this.queue.peek(simpleReplyHeaderBytes).slice().buffer);
      assert(header.getUint32(0) === simpleReplyMagic, "server sends simple replies");
      const errorNumber = header.getUint32(4);
      const cookie = header.getBigUint64(8);
      const entry = this.pending.get(cookie);
      assert(entry !== undefined, "a reply answers a pending request");
      const dataBytes = errorNumber === 0 ? entry.readTarget?.length ?? 0 : 0;
      if (this.queue.length < simpleReplyHeaderBytes + dataBytes) return;
      this.queue.skip(simpleReplyHeaderBytes);
      if (dataBytes > 0) entry.readTarget!.set(this.queue.take(dataBytes));
      this.pending.delete(cookie);
      this.slotWaiters.shift()?.();
      if (errorNumber === 0) entry.resolve();
      else {
        const errno = wireToErrno.get(errorNumber) ?? "EIO";
        entry.reject(new BlockError(errno, `server replied ${errno}`));
      }
    }
  }

  async send(
    type: number, offset: number, lengthBytes: number, flags: number,
    payload?: Uint8Array, readTarget?: Uint8Array,
  ): Promise<void> {
    while (this.pending.size >= clientRequestsInFlightMax) {
      await new Promise<void>((resolve) => this.slotWaiters.push(resolve));
    }
    if (this.failure) throw this.failure;
    const cookie = this.nextCookie++;
    const done = new Promise<void>((resolve, reject) => {
      this.pending.set(cookie, { resolve, reject, readTarget });
    });
    this.connection.write(encodeRequest({ flags, type, cookie, offset, lengthBytes }));
    if (payload) this.connection.write(payload);
    return done;
  }

  device(): BlockDevice & { readonly transmissionFlags: number } {
    const flags = this.transmissionFlags;
    const has = (flag: number) => (flags & flag) !== 0;
    const capabilities: BlockCapabilities = {
      writable: !has(TransmissionFlag.readOnly),
      flush: has(TransmissionFlag.sendFlush),
      fua: has(TransmissionFlag.sendFua) ? "native" : "none",
      trim: has(TransmissionFlag.sendTrim),
      writeZeroes: has(TransmissionFlag.sendWriteZeroes),
      multiConnection: has(TransmissionFlag.canMultiConnection),
      blockSizes: this.blockSizes,
    };
    const fuaFlag = (fua: boolean) => (fua ? CommandFlag.fua : 0);
    return {
      sizeBytes: this.sizeBytes,
      capabilities,
      transmissionFlags: flags,
      read: (offset, target) => this.send(Command.read, offset, target.length, 0, undefined,
        target),
      write: (offset, data, writeFlags) =>
        this.send(Command.write, offset, data.length, fuaFlag(writeFlags.fua), data),
      flush: () => this.send(Command.flush, 0, 0, 0),
      trim: (offset, lengthBytes, trimFlags) =>
        this.send(Command.trim, offset, lengthBytes, fuaFlag(trimFlags.fua)),
      writeZeroes: (offset, lengthBytes, zeroFlags) => this.send(Command.writeZeroes, offset,
        lengthBytes, fuaFlag(zeroFlags.fua) | (zeroFlags.noHole ? CommandFlag.noHole : 0)),
      close: async () => {
        if (!this.failure) {
          this.connection.write(encodeRequest({
            flags: 0, type: Command.disconnect, cookie: 0n, offset: 0, lengthBytes: 0,
          }));
          this.connection.end();
        }
      },
    };
  }
}

function encodeOption(option: number, data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(16 + data.length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, optionMagic);
  view.setUint32(8, option);
  view.setUint32(12, data.length);
  bytes.set(data, 16);
  return bytes;
}
