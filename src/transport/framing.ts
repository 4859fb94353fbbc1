/** Length-prefixed frames over a byte stream: a 4-byte big-endian length, then a CBOR message. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { decodeCbor, encodeCbor } from "../platform/cbor.ts";

export const frameHeaderBytes = 4;
/** The largest control frame once a peer is authenticated (a full metadata batch fits). */
export const frameBytesMax = 8 * 1024 * 1024;
/** Before authentication a peer may send only small frames: a stranger cannot make us buffer. */
export const unauthenticatedFrameBytesMax = 4 * 1024;

/** One frame holding `message` encoded as CBOR. */
export function encodeFrame(message: unknown): Uint8Array {
  const payload = encodeCbor(message);
  assert(payload.length <= frameBytesMax, `an outgoing frame fits ${frameBytesMax} bytes`);
  const frame = new Uint8Array(frameHeaderBytes + payload.length);
  new DataView(frame.buffer).setUint32(0, payload.length);
  frame.set(payload, frameHeaderBytes);
  return frame;
}

/**
 * Cuts a byte stream into frames and decodes each; oversized or malformed input throws. Every
 * byte is copied once, into a buffer of exactly its frame's size (a chunk is only valid during
 * `push`, and decoded byte strings may be views of that buffer, so it is never reused).
 */
export class FrameReader {
  private readonly header = new Uint8Array(frameHeaderBytes);
  private headerFilled = 0;
  private payload: Uint8Array | undefined;
  private payloadFilled = 0;
  /** The current bound on one frame's payload; raised after authentication. */
  payloadBytesMax = unauthenticatedFrameBytesMax;

  constructor(private readonly onMessage: (message: unknown) => void) {}

  /** Feeds bytes; calls `onMessage` for every complete frame, in order. */
  push(chunk: Uint8Array): void {
    let offset = 0;
    while (offset < chunk.length) {
      offset = this.payload === undefined ? this.takeHeader(chunk, offset)
        : this.takePayload(chunk, offset);
    }
    // A frame with an empty payload completes as soon as its header does.
    if (this.payload !== undefined && this.payload.length === 0) this.takePayload(chunk, offset);
  }

  private takeHeader(chunk: Uint8Array, offset: number): number {
    const count = Math.min(frameHeaderBytes - this.headerFilled, chunk.length - offset);
    this.header.set(chunk.subarray(offset, offset + count), this.headerFilled);
    this.headerFilled += count;
    if (this.headerFilled === frameHeaderBytes) {
      const length = new DataView(this.header.buffer).getUint32(0);
      if (length > this.payloadBytesMax) {
        throw new MarsError("protocol", `frame of ${length} bytes exceeds ${this.payloadBytesMax}`);
      }
      this.payload = new Uint8Array(length);
      this.payloadFilled = 0;
      this.headerFilled = 0;
    }
    return offset + count;
  }

  private takePayload(chunk: Uint8Array, offset: number): number {
    const payload = this.payload;
    assert(payload !== undefined, "a payload is being filled");
    const count = Math.min(payload.length - this.payloadFilled, chunk.length - offset);
    payload.set(chunk.subarray(offset, offset + count), this.payloadFilled);
    this.payloadFilled += count;
    if (this.payloadFilled === payload.length) {
      this.payload = undefined;
      this.onMessage(decodeCbor(payload));
    }
    return offset + count;
  }
}
