/** Generic netlink over bun:ffi: messages built by hand, families resolved by name, acks read. */
import { ptr } from "bun:ffi";
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { describeErrno, lastErrno, libc } from "./libc.ts";


const addressFamilyNetlink = 16;
const socketRaw = 3;
const socketCloseOnExec = 0o2000000;
const netlinkGeneric = 16;
const flagRequest = 1;
const flagAcknowledge = 4;
const messageError = 2;
const messageDone = 3;
const controllerFamilyId = 0x10;
const controllerGetFamily = 3;
const controllerAttributeFamilyId = 1;
const controllerAttributeFamilyName = 2;
export const attributeNestedFlag = 1 << 15;
const attributeTypeMask = 0x3fff;
const messageHeaderBytes = 16;
const genericHeaderBytes = 4;
/** Receive buffer: one netlink datagram from the kernel fits (it uses at most a page or 32 KiB). */
const receiveBufferBytes = 64 * 1024;
/** Datagrams read while waiting for one request's acknowledgement. */
const replyDatagramsMax = 64;

const errnoNoEntry = 2;

function describe(errno: number): string {
  return `${describeErrno(errno)} (errno ${errno})`;
}

/** A netlink error carrying the kernel's errno, so callers can react to specific ones. */
export class NetlinkError extends MarsError {
  constructor(readonly errno: number, what: string) {
    super("io", `${what}: ${describe(errno)}`, { details: { errno } });
  }
}

// --- attributes ---

export function attribute(type: number, payload: Uint8Array): Uint8Array {
  const length = 4 + payload.length;
  const bytes = new Uint8Array((length + 3) & ~3);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, length, true);
  view.setUint16(2, type, true);
  bytes.set(payload, 4);
  return bytes;
}

export function attributeU32(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(4);
  new DataView(payload.buffer).setUint32(0, value, true);
  return attribute(type, payload);
}

export function attributeU64(type: number, value: number): Uint8Array {
  const payload = new Uint8Array(8);
  new DataView(payload.buffer).setBigUint64(0, BigInt(value), true);
  return attribute(type, payload);
}

export function attributeString(type: number, text: string): Uint8Array {
  return attribute(type, new TextEncoder().encode(`${text}\0`));
}

export function attributeNested(type: number, children: readonly Uint8Array[]): Uint8Array {
  return attribute(type | attributeNestedFlag, concat(children));
}

/** Attributes by type (nested flag stripped); each payload is a copy. */
export function parseAttributes(bytes: Uint8Array): Map<number, Uint8Array[]> {
  const found = new Map<number, Uint8Array[]>();
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.length);
  let offset = 0;
  while (offset + 4 <= bytes.length) {
    const length = view.getUint16(offset, true);
    if (length < 4 || offset + length > bytes.length) break;
    const type = view.getUint16(offset + 2, true) & attributeTypeMask;
    const list = found.get(type) ?? [];
    list.push(bytes.slice(offset + 4, offset + length));
    found.set(type, list);
    offset += (length + 3) & ~3;
  }
  return found;
}

export function readU32(payload: Uint8Array | undefined): number | undefined {
  if (!payload || payload.length < 4) return undefined;
  return new DataView(payload.buffer, payload.byteOffset, 4).getUint32(0, true);
}

export function readU16(payload: Uint8Array | undefined): number | undefined {
  if (!payload || payload.length < 2) return undefined;
  return new DataView(payload.buffer, payload.byteOffset, 2).getUint16(0, true);
}

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const bytes = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let offset = 0;
  for (const part of parts) {
    bytes.set(part, offset);
    offset += part.length;
  }
  return bytes;
}

// --- the socket ---

/**
 * One NETLINK_GENERIC socket. Requests are synchronous: the kernel runs a generic-netlink
 * command inside the send call, and the acknowledgement is ready when it returns.
 */
export class GenericNetlink {
  private sequence = 1;
  private readonly receiveBuffer = new Uint8Array(receiveBufferBytes);

  private constructor(private readonly fd: number) {}

  static open(): GenericNetlink {
    const fd = libc.symbols.socket(addressFamilyNetlink, socketRaw | socketCloseOnExec,
      netlinkGeneric);
    if (fd < 0) throw new NetlinkError(lastErrno(), "netlink socket");
    return new GenericNetlink(fd);
  }

  close(): void {
    libc.symbols.close(this.fd);
  }

  /** The family's numeric id, or undefined when no such family is registered. */
  resolveFamily(name: string): number | undefined {
    try {
      const replies = this.request(controllerFamilyId, controllerGetFamily, 1,
        [attributeString(controllerAttributeFamilyName, name)]);
      for (const reply of replies) {
        const id = readU16(parseAttributes(reply).get(controllerAttributeFamilyId)?.[0]);
        if (id !== undefined) return id;
      }
      return undefined;
    } catch (error) {
      if (error instanceof NetlinkError && error.errno === errnoNoEntry) return undefined;
      throw error;
    }
  }

  /** Sends one command and returns the attribute payloads of every reply before the ack. */
  request(
    family: number, command: number, version: number, attributes: readonly Uint8Array[],
  ): Uint8Array[] {
    const sequence = this.sequence++;
    const body = concat(attributes);
    const message = new Uint8Array(messageHeaderBytes + genericHeaderBytes + body.length);
    const view = new DataView(message.buffer);
    view.setUint32(0, message.length, true);
    view.setUint16(4, family, true);
    view.setUint16(6, flagRequest | flagAcknowledge, true);
    view.setUint32(8, sequence, true);
    view.setUint32(12, 0, true);
    message[16] = command;
    message[17] = version;
    message.set(body, messageHeaderBytes + genericHeaderBytes);
    const sent = Number(libc.symbols.send(this.fd, ptr(message), message.length, 0));
    if (sent < 0) throw new NetlinkError(lastErrno(), `netlink command ${command}`);
    return this.receiveReplies(sequence, command);
  }

  private receiveReplies(sequence: number, command: number): Uint8Array[] {
    const replies: Uint8Array[] = [];
    for (let datagram = 0; datagram < replyDatagramsMax; datagram++) {
      const received = Number(libc.symbols.recv(this.fd, ptr(this.receiveBuffer),
        this.receiveBuffer.length, 0));
      if (received < 0) throw new NetlinkError(lastErrno(), `netlink reply to ${command}`);
      const bytes = this.receiveBuffer.subarray(0, received);
      const view = new DataView(bytes.buffer, 0, received);
      let offset = 0;
      while (offset + messageHeaderBytes <= received) {
        const length = view.getUint32(offset, true);
        const type = view.getUint16(offset + 4, true);
        const replySequence = view.getUint32(offset + 8, true);
        assert(length >= messageHeaderBytes, "netlink messages hold their header");
        if (replySequence === sequence) {
          if (type === messageError) {
            const errorNumber = view.getInt32(offset + messageHeaderBytes, true);
            const what = `netlink command ${command}`;
            if (errorNumber !== 0) throw new NetlinkError(-errorNumber, what);
            return replies;
          }
          if (type === messageDone) return replies;
          const start = offset + messageHeaderBytes + genericHeaderBytes;
          replies.push(bytes.slice(start, offset + length));
        }
        offset += (length + 3) & ~3;
      }
    }
    throw new MarsError("io", `netlink command ${command}: no acknowledgement`);
  }
}
