/** The fixed-newstyle handshake: client flags, then option haggling until GO or EXPORT_NAME. */
import { assert } from "../lib/assert.ts";
import type { BlockDevice } from "../block/types.ts";
import type { ByteQueue } from "./byte-queue.ts";
import {
  clientFlagFixedNewstyle, clientFlagNoZeroes, decodeString, encodeOptionReply, encodeString,
  exportNamePaddingBytes, Info, Option, optionHeaderBytes, optionMagic, OptionReply,
  stringBytesMax, transmissionFlagsOf,
} from "./protocol.ts";

/** One device offered under a name. `device` is already contract-checked by the server. */
export interface NbdExport {
  readonly name: string;
  readonly description: string;
  readonly device: BlockDevice;
  /** Largest READ or WRITE payload this export accepts, advertised as the maximum block size. */
  readonly payloadBytesMax: number;
}

/** Longest option payload accepted; longer ones end the connection (names are ≤ 4 KiB). */
export const optionBytesMax = 2 * stringBytesMax + 64;
/** Options one client may send before it must pick an export. */
export const optionsPerConnectionMax = 64;
/** Info requests inside one INFO/GO option. */
export const infoRequestsMax = 32;

export type HandshakeOutcome =
  | { readonly kind: "waiting" }
  | { readonly kind: "transmission"; readonly export: NbdExport; readonly structured: boolean }
  | { readonly kind: "close"; readonly reason: string };

const waiting: HandshakeOutcome = { kind: "waiting" };

/**
 * Consumes client bytes from a queue and produces server bytes through `send`. The caller
 * sends the greeting (`encodeGreeting`) first, then calls `advance` whenever bytes arrive.
 */
export class Handshake {
  private clientFlagsSeen = false;
  private noZeroes = false;
  private structured = false;
  private optionCount = 0;

  constructor(
    private readonly exports: readonly NbdExport[],
    private readonly send: (bytes: Uint8Array) => void,
  ) {
    assert(exports.length >= 1, "a server offers at least one export");
  }

  /** Processes every complete message in `queue`; stops at the first decisive outcome. */
  advance(queue: ByteQueue): HandshakeOutcome {
    if (!this.clientFlagsSeen) {
      if (queue.length < 4) return waiting;
      const flags = readUint32(queue.take(4), 0);
      if ((flags & ~(clientFlagFixedNewstyle | clientFlagNoZeroes)) !== 0) {
        return { kind: "close", reason: `unknown client flags 0x${flags.toString(16)}` };
      }
      this.noZeroes = (flags & clientFlagNoZeroes) !== 0;
      this.clientFlagsSeen = true;
    }
    while (queue.length >= optionHeaderBytes) {
      const header = queue.peek(optionHeaderBytes);
      const view = new DataView(header.buffer, header.byteOffset, optionHeaderBytes);
      if (view.getBigUint64(0) !== optionMagic) {
        return { kind: "close", reason: "bad option magic" };
      }
      const option = view.getUint32(8);
      const lengthBytes = view.getUint32(12);
      if (lengthBytes > optionBytesMax) {
        return { kind: "close", reason: `option ${option} carries ${lengthBytes} bytes` };
      }
      if (queue.length < optionHeaderBytes + lengthBytes) return waiting;
      queue.skip(optionHeaderBytes);
      const payload = queue.take(lengthBytes);
      this.optionCount++;
      if (this.optionCount > optionsPerConnectionMax) {
        return { kind: "close", reason: `more than ${optionsPerConnectionMax} options` };
      }
      const outcome = this.handleOption(option, payload);
      if (outcome.kind !== "waiting") return outcome;
    }
    return waiting;
  }

  private handleOption(option: number, payload: Uint8Array): HandshakeOutcome {
    switch (option) {
      case Option.exportName: return this.optionExportName(payload);
      case Option.abort:
        this.reply(option, OptionReply.ack);
        return { kind: "close", reason: "client aborted the handshake" };
      case Option.list: return this.optionList(payload);
      case Option.info:
      case Option.go: return this.optionInfoOrGo(option, payload);
      case Option.structuredReply:
        if (payload.length !== 0) return this.refuse(option, "structured reply takes no data");
        this.structured = true;
        this.reply(option, OptionReply.ack);
        return waiting;
      default:
        // STARTTLS, meta contexts, extended headers and anything newer: not offered.
        this.reply(option, OptionReply.errorUnsupported, encodeString("option not supported"));
        return waiting;
    }
  }

  private optionExportName(payload: Uint8Array): HandshakeOutcome {
    const name = decodeString(payload);
    const chosen = name === undefined ? undefined : this.find(name);
    if (!chosen) return { kind: "close", reason: `no export named '${name ?? "?"}'` };
    const padding = this.noZeroes ? 0 : exportNamePaddingBytes;
    const bytes = new Uint8Array(10 + padding);
    const view = new DataView(bytes.buffer);
    view.setBigUint64(0, BigInt(chosen.device.sizeBytes));
    view.setUint16(8, transmissionFlagsOf(chosen.device.capabilities, this.structured));
    this.send(bytes);
    return { kind: "transmission", export: chosen, structured: this.structured };
  }

  private optionList(payload: Uint8Array): HandshakeOutcome {
    if (payload.length !== 0) return this.refuse(Option.list, "list takes no data");
    for (const entry of this.exports) {
      const name = encodeString(entry.name);
      const description = encodeString(entry.description);
      const data = new Uint8Array(4 + name.length + description.length);
      new DataView(data.buffer).setUint32(0, name.length);
      data.set(name, 4);
      data.set(description, 4 + name.length);
      this.reply(Option.list, OptionReply.server, data);
    }
    this.reply(Option.list, OptionReply.ack);
    return waiting;
  }

  private optionInfoOrGo(option: number, payload: Uint8Array): HandshakeOutcome {
    const request = parseInfoRequest(payload);
    if (!request) return this.refuse(option, "malformed info request");
    const chosen = this.find(request.name);
    if (!chosen) {
      const message = encodeString(`no export named '${request.name}'`);
      this.reply(option, OptionReply.errorUnknownExport, message);
      return waiting;
    }
    this.sendInfo(option, chosen, request.infos);
    this.reply(option, OptionReply.ack);
    if (option === Option.info) return waiting;
    return { kind: "transmission", export: chosen, structured: this.structured };
  }

  private sendInfo(option: number, chosen: NbdExport, requested: readonly number[]): void {
    const exportInfo = new Uint8Array(12);
    const exportView = new DataView(exportInfo.buffer);
    exportView.setUint16(0, Info.export);
    exportView.setBigUint64(2, BigInt(chosen.device.sizeBytes));
    exportView.setUint16(10, transmissionFlagsOf(chosen.device.capabilities, this.structured));
    this.reply(option, OptionReply.info, exportInfo);
    // Block sizes go out whether asked or not: the protocol allows it, and clients that
    // honour them avoid requests the device would reject.
    this.reply(option, OptionReply.info, encodeBlockSizeInfo(chosen));
    if (requested.includes(Info.name)) {
      this.reply(option, OptionReply.info, withInfoType(Info.name, encodeString(chosen.name)));
    }
    if (requested.includes(Info.description) && chosen.description !== "") {
      const text = encodeString(chosen.description);
      this.reply(option, OptionReply.info, withInfoType(Info.description, text));
    }
  }

  /** Exact name, or the default export for the empty name. */
  private find(name: string): NbdExport | undefined {
    return this.exports.find((entry) => entry.name === name) ??
      (name === "" ? this.exports[0] : undefined);
  }

  private refuse(option: number, message: string): HandshakeOutcome {
    this.reply(option, OptionReply.errorInvalid, encodeString(message));
    return waiting;
  }

  private reply(option: number, type: number, payload?: Uint8Array): void {
    this.send(encodeOptionReply(option, type, payload));
  }
}

/** The three block sizes, kept inside what the protocol allows for each. */
export function blockSizesOf(chosen: NbdExport): [number, number, number] {
  const sizes = chosen.device.capabilities.blockSizes;
  const minimum = sizes.minimumBytes;
  assert(minimum <= 65536, "minimum block size fits the protocol (≤ 64 KiB)");
  const preferred = Math.max(sizes.preferredBytes, 512, minimum);
  const maximum = Math.min(sizes.maximumBytes, chosen.payloadBytesMax);
  assert(maximum % minimum === 0 && maximum >= preferred, "maximum block size is usable");
  return [minimum, preferred, maximum];
}

function encodeBlockSizeInfo(chosen: NbdExport): Uint8Array {
  const [minimum, preferred, maximum] = blockSizesOf(chosen);
  const bytes = new Uint8Array(14);
  const view = new DataView(bytes.buffer);
  view.setUint16(0, Info.blockSize);
  view.setUint32(2, minimum);
  view.setUint32(6, preferred);
  view.setUint32(10, maximum);
  return bytes;
}

function withInfoType(type: number, data: Uint8Array): Uint8Array {
  const bytes = new Uint8Array(2 + data.length);
  new DataView(bytes.buffer).setUint16(0, type);
  bytes.set(data, 2);
  return bytes;
}

/** INFO/GO data: name length, name, count of info requests, the requests (16 bits each). */
function parseInfoRequest(
  payload: Uint8Array,
): { name: string; infos: number[] } | undefined {
  if (payload.length < 6) return undefined;
  const view = new DataView(payload.buffer, payload.byteOffset, payload.length);
  const nameBytes = view.getUint32(0);
  if (nameBytes > stringBytesMax || 4 + nameBytes + 2 > payload.length) return undefined;
  const name = decodeString(payload.subarray(4, 4 + nameBytes));
  const count = view.getUint16(4 + nameBytes);
  if (name === undefined || count > infoRequestsMax) return undefined;
  if (payload.length !== 4 + nameBytes + 2 + 2 * count) return undefined;
  const infos: number[] = [];
  for (let index = 0; index < count; index++) infos.push(view.getUint16(6 + nameBytes + 2 * index));
  return { name, infos };
}

function readUint32(bytes: Uint8Array, offset: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset + offset, 4).getUint32(0);
}
