/** The transmission phase: requests cut from the stream, run concurrently, replied in any order. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { BlockError, type BlockDevice, type PayloadLease } from "../block/types.ts";
import type { ByteQueue } from "./byte-queue.ts";
import { acquirePayload, type PayloadBuffers } from "./payload-buffers.ts";
import { ReplyBatch } from "./reply-batch.ts";
import {
  Command, CommandFlag, decodeRequest, encodeSimpleReply, encodeStructuredChunk,
  writeSimpleReplyHeader, writeStructuredReadHeader,
  encodeStructuredError, ReplyChunk, replyFlagDone, type Request, requestHeaderBytes,
  requestMagic, requestMagicAt, simpleReplyHeaderBytes, structuredReplyHeaderBytes, WireError,
  wireErrorOf,
} from "./protocol.ts";

/** Requests of one connection being served at once; more wait in the socket (backpressure). */
export const requestsInFlightMax = 128;
/** Payload bytes (write data and read buffers) one connection may hold in flight. */
export const inFlightBytesMax = 64 * 1024 * 1024;
/** Payloads at least this large are copied straight from the socket into their own buffer. */
const collectThresholdBytes = 64 * 1024;

/** What the transmission needs from its connection, so it can be driven without sockets. */
export interface ReplySink {
  /** Queues reply bytes; false when the send queue is over its high-water mark. */
  write(bytes: Uint8Array): boolean;
  /** Stops (true) or restarts (false) reading from the peer. */
  setReadingPaused(paused: boolean): void;
  /** The peer broke the protocol: drop the connection at once. */
  abort(reason: string): void;
  /** The client said goodbye and every reply is queued: close after sending. */
  finish(): void;
}

interface Settings {
  readonly device: BlockDevice;
  readonly structured: boolean;
  readonly payloadBytesMax: number;
  readonly buffers: PayloadBuffers;
}

/** A finished request's reply and what to give back once it is sent. */
interface Reply {
  readonly bytes: Uint8Array;
  readonly release?: () => void;
}

const commandFlagsKnown = CommandFlag.fua | CommandFlag.noHole | CommandFlag.dontFragment;

/** Serves one connection's requests against a contract-checked device. */
export class Transmission {
  private requestsInFlight = 0;
  private bytesInFlight = 0;
  /** A refused oversized WRITE whose payload is still being dropped; it replies afterwards. */
  private discarding: { request: Request; remainingBytes: number } | undefined;
  private sendBlocked = false;
  private readingPaused = false;
  private stopping = false;
  private finished = false;
  private idleWaiters: Array<() => void> = [];
  /** A WRITE whose payload is still arriving: bytes go straight into its buffer (one copy). */
  private collecting: {
    request: Request; payload: Uint8Array; filled: number; release: () => void;
    lease: PayloadLease;
  } | undefined;
  private readonly replies: ReplyBatch;

  constructor(
    private readonly settings: Settings,
    private readonly queue: ByteQueue,
    private readonly sink: ReplySink,
  ) {
    assert(settings.payloadBytesMax <= inFlightBytesMax, "one request fits the in-flight window");
    this.replies = new ReplyBatch((bytes) => sink.write(bytes), () => (this.sendBlocked = true));
  }

  get inFlight(): number {
    return this.requestsInFlight;
  }

  /** Bytes arrived from the peer; false when they overflow the input bound. */
  receive(chunk: Uint8Array): boolean {
    const collecting = this.collecting;
    if (collecting && !this.stopping) {
      const taken = Math.min(chunk.length, collecting.payload.length - collecting.filled);
      collecting.payload.set(chunk.subarray(0, taken), collecting.filled);
      collecting.filled += taken;
      chunk = chunk.subarray(taken);
      if (collecting.filled === collecting.payload.length) {
        this.collecting = undefined;
        this.start(collecting.request, collecting.payload, collecting.release, collecting.lease);
      }
    }
    if (!this.queue.push(chunk)) return false;
    this.pump();
    return true;
  }

  /** Cuts and starts every complete request the window admits. */
  pump(): void {
    while (!this.stopping && !this.sendBlocked && !this.collecting) {
      if (this.discarding) {
        // Clients may not expect a reply before they finished sending, so it waits.
        this.discarding.remainingBytes -= this.queue.skip(this.discarding.remainingBytes);
        if (this.discarding.remainingBytes > 0) break;
        const refused = this.discarding.request;
        this.discarding = undefined;
        this.start(refused, undefined);
        continue;
      }
      if (this.queue.length < requestHeaderBytes) break;
      if (requestMagicAt(this.queue.peek(4)) !== requestMagic) {
        this.stopping = true;
        this.sink.abort("bad request magic");
        return;
      }
      const request = decodeRequest(this.queue.peek(requestHeaderBytes));
      const payloadBytes = this.payloadBytesOf(request);
      if (!this.admits(request, payloadBytes)) break;
      if (request.type === Command.write && request.lengthBytes > payloadBytes) {
        this.queue.skip(requestHeaderBytes);
        this.discarding = { request, remainingBytes: request.lengthBytes };
        continue;
      }
      if (this.queue.length < requestHeaderBytes + payloadBytes) {
        if (payloadBytes >= collectThresholdBytes) this.startCollecting(request, payloadBytes);
        break;
      }
      this.queue.skip(requestHeaderBytes);
      const payload = payloadBytes > 0 ? this.queue.take(payloadBytes) : undefined;
      this.start(request, payload);
    }
    this.updateReadingPause();
    this.finishWhenDone();
  }

  /** The send queue drained below its low-water mark. */
  drained(): void {
    this.sendBlocked = false;
    this.pump();
  }

  /** The connection is gone: drop a half-received payload (its buffer goes back). */
  abandon(): void {
    this.stopping = true;
    this.finished = true;
    this.collecting?.release();
    this.collecting = undefined;
  }

  /** Stops taking requests; resolves once every started request has replied. */
  stop(): Promise<void> {
    this.stopping = true;
    this.finishWhenDone();
    if (this.requestsInFlight === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /** Moves what arrived of a large payload into its own buffer; the rest lands there directly. */
  private startCollecting(request: Request, payloadBytes: number): void {
    this.queue.skip(requestHeaderBytes);
    const { bytes: payload, release, lease } =
      acquirePayload(this.settings.buffers, payloadBytes);
    const filled = this.queue.length;
    assert(filled < payloadBytes, "an incomplete payload is collected");
    payload.set(this.queue.take(filled));
    this.collecting = { request, payload, filled, release, lease };
  }

  /** Payload bytes that follow the header in the stream: only WRITE carries any. */
  private payloadBytesOf(request: Request): number {
    if (request.type !== Command.write) return 0;
    return request.lengthBytes <= this.settings.payloadBytesMax ? request.lengthBytes : 0;
  }

  private admits(request: Request, payloadBytes: number): boolean {
    if (this.requestsInFlight >= requestsInFlightMax) return false;
    const bytes = Math.max(payloadBytes, request.type === Command.read ? request.lengthBytes : 0);
    if (this.requestsInFlight === 0) return true;
    return this.bytesInFlight + Math.min(bytes, this.settings.payloadBytesMax) <= inFlightBytesMax;
  }

  /** `lease`: the device may keep `payload` (a buffer of its own, not a view into input). */
  private start(
    request: Request, payload: Uint8Array | undefined, release?: () => void,
    lease?: PayloadLease,
  ): void {
    if (request.type === Command.disconnect) {
      this.stopping = true;
      return;
    }
    const bytes = payload?.length ??
      (request.type === Command.read ? Math.min(request.lengthBytes, this.settings.payloadBytesMax)
        : 0);
    this.requestsInFlight++;
    this.bytesInFlight += bytes;
    assert(this.requestsInFlight <= requestsInFlightMax, "in-flight requests within the window");
    this.execute(request, payload, lease).then(
      (reply) => {
        release?.();
        this.complete(bytes, reply);
      },
      (error: unknown) => {
        release?.();
        this.complete(bytes, { bytes: this.errorReply(request, error) });
      },
    );
  }

  private complete(bytes: number, reply: Reply): void {
    this.requestsInFlight--;
    this.bytesInFlight -= bytes;
    assert(this.requestsInFlight >= 0 && this.bytesInFlight >= 0, "in-flight counts balance");
    if (this.finished) reply.release?.();
    else this.replies.add(reply.bytes, reply.release);
    if (this.requestsInFlight === 0) {
      for (const resolve of this.idleWaiters.splice(0)) resolve();
    }
    this.pump();
  }

  /** Runs one request; resolves with its whole reply (header and, for READ, data). */
  private async execute(
    request: Request, payload: Uint8Array | undefined, lease: PayloadLease | undefined,
  ): Promise<Reply> {
    const refusal = this.refusalOf(request);
    if (refusal) throw refusal;
    const { device } = this.settings;
    const offset = request.offset!;
    const fua = (request.flags & CommandFlag.fua) !== 0;
    switch (request.type) {
      case Command.read: return this.executeRead(request, offset);
      case Command.write:
        await device.write(offset, payload ?? new Uint8Array(0),
          lease === undefined ? { fua } : { fua, lease });
        break;
      case Command.flush:
        await device.flush();
        break;
      case Command.trim:
        await device.trim(offset, request.lengthBytes, { fua });
        break;
      case Command.writeZeroes: {
        const noHole = (request.flags & CommandFlag.noHole) !== 0;
        await device.writeZeroes(offset, request.lengthBytes, { fua, noHole });
        break;
      }
      default:
        assert(false, "refusalOf rejects every other command");
    }
    return { bytes: encodeSimpleReply(0, request.cookie) };
  }

  /** Reads straight into the reply buffer, behind the header the reply needs. */
  private async executeRead(request: Request, offset: number): Promise<Reply> {
    const length = request.lengthBytes;
    const { structured, buffers, device } = this.settings;
    if (structured && length === 0) {
      return {
        bytes: encodeStructuredChunk(replyFlagDone, ReplyChunk.none, request.cookie, 0).bytes,
      };
    }
    const headerBytes = structured ? structuredReplyHeaderBytes + 8 : simpleReplyHeaderBytes;
    const { bytes, release } = acquirePayload(buffers, headerBytes + length);
    try {
      if (structured) {
        writeStructuredReadHeader(bytes, request.cookie, offset, length);
      } else {
        writeSimpleReplyHeader(bytes, 0, request.cookie);
      }
      await device.read(offset, bytes.subarray(headerBytes));
    } catch (error) {
      release();
      throw error;
    }
    return { bytes, release };
  }

  /** Input errors the device never sees: unknown verbs and flags, impossible ranges. */
  private refusalOf(request: Request): BlockError | undefined {
    const known = [Command.read, Command.write, Command.flush, Command.trim, Command.writeZeroes];
    if (!(known as number[]).includes(request.type)) {
      return new BlockError("EINVAL", `unknown command ${request.type}`);
    }
    if ((request.flags & ~commandFlagsKnown) !== 0) {
      return new BlockError("EINVAL", `unknown command flags 0x${request.flags.toString(16)}`);
    }
    if (request.offset === undefined) {
      return new BlockError("EINVAL", "offset beyond the end of the device");
    }
    const carriesData = request.type === Command.read || request.type === Command.write;
    if (carriesData && request.lengthBytes > this.settings.payloadBytesMax) {
      return new BlockError("EOVERFLOW",
        `${request.lengthBytes} bytes exceed the ${this.settings.payloadBytesMax} byte limit`);
    }
    return undefined;
  }

  private errorReply(request: Request, error: unknown): Uint8Array {
    if (!(error instanceof MarsError)) throw error; // a bug: let it stop the process
    const errorNumber = error instanceof BlockError ? wireErrorOf(error.errno) : WireError.EIO;
    if (this.settings.structured && request.type === Command.read) {
      return encodeStructuredError(request.cookie, errorNumber, error.message);
    }
    return encodeSimpleReply(errorNumber, request.cookie);
  }

  private updateReadingPause(): void {
    const full = this.requestsInFlight >= requestsInFlightMax || this.sendBlocked ||
      this.stopping || this.queue.length >= this.queue.bytesMax / 2;
    if (full !== this.readingPaused) {
      this.readingPaused = full;
      this.sink.setReadingPaused(full);
    }
  }

  private finishWhenDone(): void {
    if (this.stopping && this.requestsInFlight === 0 && !this.finished) {
      this.replies.flush();
      this.finished = true;
      this.sink.finish();
    }
  }
}
