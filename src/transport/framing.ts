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

/** Cuts a byte stream into frames and decodes each; oversized or malformed input throws. */
export class FrameReader {
  private buffered: Uint8Array = new Uint8Array(0);
  /** The current bound on one frame's payload; raised after authentication. */
  payloadBytesMax = unauthenticatedFrameBytesMax;

  constructor(private readonly onMessage: (message: unknown) => void) {}

  /** Feeds bytes; calls `onMessage` for every complete frame, in order. */
  push(chunk: Uint8Array): void {
    const joined = new Uint8Array(this.buffered.length + chunk.length);
    joined.set(this.buffered);
    joined.set(chunk, this.buffered.length);
    let offset = 0;
    while (joined.length - offset >= frameHeaderBytes) {
      const view = new DataView(joined.buffer, joined.byteOffset + offset, frameHeaderBytes);
      const length = view.getUint32(0);
      if (length > this.payloadBytesMax) {
        throw new MarsError("protocol", `frame of ${length} bytes exceeds ${this.payloadBytesMax}`);
      }
      if (joined.length - offset - frameHeaderBytes < length) break;
      const start = offset + frameHeaderBytes;
      offset = start + length;
      this.onMessage(decodeCbor(joined.subarray(start, offset)));
    }
    this.buffered = joined.slice(offset);
    assert(this.buffered.length < frameHeaderBytes + this.payloadBytesMax, "buffer is bounded");
  }
}
