/** NBD wire constants and the fixed-size codecs shared by the handshake and transmission phases. */
import { assert } from "../lib/assert.ts";
import type { BlockCapabilities, BlockErrno } from "../block/types.ts";

// --- magic numbers ---
export const serverGreetingMagic = 0x4e42444d41474943n; // "NBDMAGIC"
export const optionMagic = 0x49484156454f5054n; // "IHAVEOPT"
export const optionReplyMagic = 0x0003e889045565a9n;
export const requestMagic = 0x25609513;
export const simpleReplyMagic = 0x67446698;
export const structuredReplyMagic = 0x668e33ef;

// --- handshake flags ---
export const handshakeFlagFixedNewstyle = 1 << 0;
export const handshakeFlagNoZeroes = 1 << 1;
export const clientFlagFixedNewstyle = 1 << 0;
export const clientFlagNoZeroes = 1 << 1;

// --- options and option replies ---
export const Option = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
  extendedHeaders: 11,
} as const;

export const OptionReply = {
  ack: 1,
  server: 2,
  info: 3,
  errorUnsupported: 0x80000001,
  errorPolicy: 0x80000002,
  errorInvalid: 0x80000003,
  errorUnknownExport: 0x80000006,
  errorShutdown: 0x80000007,
  errorTooBig: 0x80000009,
} as const;

export const Info = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

// --- transmission ---
export const Command = {
  read: 0,
  write: 1,
  disconnect: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
} as const;

export const CommandFlag = { fua: 1 << 0, noHole: 1 << 1, dontFragment: 1 << 2 } as const;

export const TransmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDontFragment: 1 << 7,
  canMultiConnection: 1 << 8,
} as const;

export const ReplyChunk = { none: 0, offsetData: 1, error: (1 << 15) + 1 } as const;
export const replyFlagDone = 1 << 0;

/** Error numbers on the wire (Linux values, as the protocol fixes them). */
export const WireError = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

export function wireErrorOf(errno: BlockErrno): number {
  return WireError[errno];
}

// --- sizes ---
export const requestHeaderBytes = 28;
export const simpleReplyHeaderBytes = 16;
export const structuredReplyHeaderBytes = 20;
export const optionHeaderBytes = 16;
export const optionReplyHeaderBytes = 20;
/** The zero padding after NBD_OPT_EXPORT_NAME's reply unless both sides agreed to skip it. */
export const exportNamePaddingBytes = 124;
/** Longest string the protocol allows (export names, descriptions, messages). */
export const stringBytesMax = 4096;

export interface Request {
  readonly flags: number;
  readonly type: number;
  readonly cookie: bigint;
  /** Undefined when the 64-bit offset exceeds 2^53: the request is out of range by definition. */
  readonly offset: number | undefined;
  readonly lengthBytes: number;
}

/** Decodes one request header; the caller checked the magic with `requestMagicAt`. */
export function decodeRequest(bytes: Uint8Array): Request {
  assert(bytes.length >= requestHeaderBytes, "a whole request header");
  const view = new DataView(bytes.buffer, bytes.byteOffset, requestHeaderBytes);
  const offset = view.getBigUint64(16);
  return {
    flags: view.getUint16(4),
    type: view.getUint16(6),
    cookie: view.getBigUint64(8),
    offset: offset <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(offset) : undefined,
    lengthBytes: view.getUint32(24),
  };
}

export function requestMagicAt(bytes: Uint8Array): number {
  return new DataView(bytes.buffer, bytes.byteOffset, 4).getUint32(0);
}

export function encodeRequest(request: Request): Uint8Array {
  const bytes = new Uint8Array(requestHeaderBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, requestMagic);
  view.setUint16(4, request.flags);
  view.setUint16(6, request.type);
  view.setBigUint64(8, request.cookie);
  view.setBigUint64(16, BigInt(request.offset ?? Number.MAX_SAFE_INTEGER));
  view.setUint32(24, request.lengthBytes);
  return bytes;
}

/** A simple reply header; `dataBytes` reserves room after it for READ data. */
export function encodeSimpleReply(errorNumber: number, cookie: bigint, dataBytes = 0): Uint8Array {
  const bytes = new Uint8Array(simpleReplyHeaderBytes + dataBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, simpleReplyMagic);
  view.setUint32(4, errorNumber);
  view.setBigUint64(8, cookie);
  return bytes;
}

/** Writes a simple reply header at the start of `target` (a reused buffer). */
export function writeSimpleReplyHeader(target: Uint8Array, errorNumber: number, cookie: bigint) {
  const view = new DataView(target.buffer, target.byteOffset, simpleReplyHeaderBytes);
  view.setUint32(0, simpleReplyMagic);
  view.setUint32(4, errorNumber);
  view.setBigUint64(8, cookie);
}

/** Writes the header of a final OFFSET_DATA chunk (and its offset) at the start of `target`. */
export function writeStructuredReadHeader(
  target: Uint8Array, cookie: bigint, offset: number, dataBytes: number,
): void {
  const view = new DataView(target.buffer, target.byteOffset, structuredReplyHeaderBytes + 8);
  view.setUint32(0, structuredReplyMagic);
  view.setUint16(4, replyFlagDone);
  view.setUint16(6, ReplyChunk.offsetData);
  view.setBigUint64(8, cookie);
  view.setUint32(16, 8 + dataBytes);
  view.setBigUint64(structuredReplyHeaderBytes, BigInt(offset));
}

/** One structured reply chunk header followed by `payloadBytes` of room for its payload. */
export function encodeStructuredChunk(
  flags: number, type: number, cookie: bigint, payloadBytes: number,
): { bytes: Uint8Array; view: DataView } {
  const bytes = new Uint8Array(structuredReplyHeaderBytes + payloadBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, structuredReplyMagic);
  view.setUint16(4, flags);
  view.setUint16(6, type);
  view.setBigUint64(8, cookie);
  view.setUint32(16, payloadBytes);
  return { bytes, view };
}

/** The final error chunk of a structured reply, with a human-readable message. */
export function encodeStructuredError(
  cookie: bigint, errorNumber: number, message: string,
): Uint8Array {
  const text = encodeString(message).subarray(0, stringBytesMax);
  const chunk = encodeStructuredChunk(replyFlagDone, ReplyChunk.error, cookie, 6 + text.length);
  chunk.view.setUint32(structuredReplyHeaderBytes, errorNumber);
  chunk.view.setUint16(structuredReplyHeaderBytes + 4, text.length);
  chunk.bytes.set(text, structuredReplyHeaderBytes + 6);
  return chunk.bytes;
}

export function encodeOptionReply(option: number, type: number, payload?: Uint8Array): Uint8Array {
  const length = payload?.length ?? 0;
  const bytes = new Uint8Array(optionReplyHeaderBytes + length);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, optionReplyMagic);
  view.setUint32(8, option);
  view.setUint32(12, type);
  view.setUint32(16, length);
  if (payload) bytes.set(payload, optionReplyHeaderBytes);
  return bytes;
}

export function encodeGreeting(): Uint8Array {
  const bytes = new Uint8Array(18);
  const view = new DataView(bytes.buffer);
  view.setBigUint64(0, serverGreetingMagic);
  view.setBigUint64(8, optionMagic);
  view.setUint16(16, handshakeFlagFixedNewstyle | handshakeFlagNoZeroes);
  return bytes;
}

/** Transmission flags follow from the layer's declared capabilities and nothing else. */
export function transmissionFlagsOf(
  capabilities: BlockCapabilities, structuredReplies: boolean,
): number {
  let flags = TransmissionFlag.hasFlags;
  if (!capabilities.writable) flags |= TransmissionFlag.readOnly;
  if (capabilities.flush) flags |= TransmissionFlag.sendFlush;
  if (capabilities.fua !== "none") flags |= TransmissionFlag.sendFua;
  if (capabilities.trim) flags |= TransmissionFlag.sendTrim;
  if (capabilities.writeZeroes) flags |= TransmissionFlag.sendWriteZeroes;
  if (structuredReplies) flags |= TransmissionFlag.sendDontFragment;
  if (capabilities.multiConnection) flags |= TransmissionFlag.canMultiConnection;
  return flags;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { fatal: true });

export function encodeString(text: string): Uint8Array {
  return encoder.encode(text);
}

/** Decodes a protocol string; undefined when it is not valid UTF-8. */
export function decodeString(bytes: Uint8Array): string | undefined {
  try {
    return decoder.decode(bytes);
  } catch {
    return undefined;
  }
}
