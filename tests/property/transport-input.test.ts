// Property: whatever bytes a peer sends, the frame reader and message parser answer with a typed
// protocol error or a checked message — never a crash, never an oversized buffer.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { isMarsError } from "../../src/lib/errors.ts";
import { encodeCbor } from "../../src/platform/cbor.ts";
import { encodeFrame, FrameReader } from "../../src/transport/framing.ts";
import { parseMessage } from "../../src/transport/messages.ts";
import { propertyParameters } from "../support/property.ts";

function feed(chunks: Uint8Array[]): { messages: number; error?: string } {
  let messages = 0;
  const reader = new FrameReader((value) => {
    parseMessage(value);
    messages++;
  });
  try {
    for (const chunk of chunks) reader.push(chunk);
    return { messages };
  } catch (error) {
    if (!isMarsError(error)) throw error;
    expect(error.code).toBe("protocol");
    return { messages, error: error.message };
  }
}

test("random bytes and mangled frames only ever give protocol errors", () => {
  const validFrame = encodeFrame({ type: "heartbeat", time: 5 });
  const objectFrame = fc.dictionary(fc.string({ maxLength: 8 }),
    fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.uint8Array({ maxLength: 40 })))
    .map((record) => {
      const payload = encodeCbor({ ...record, time: 1 });
      const frame = new Uint8Array(4 + payload.length);
      new DataView(frame.buffer).setUint32(0, payload.length);
      frame.set(payload, 4);
      return frame;
    });
  const chunk = fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(validFrame), objectFrame,
    fc.constant(validFrame.subarray(0, 3)));
  fc.assert(fc.property(fc.array(chunk, { maxLength: 20 }), (chunks) => {
    feed(chunks);
  }), propertyParameters("transport input", 2000));
});

test("a valid frame split at every byte boundary is read once", () => {
  const frame = encodeFrame({ type: "pull", incarnation: "x", afterSeq: 3, time: 9 });
  for (let cut = 0; cut <= frame.length; cut++) {
    expect(feed([frame.subarray(0, cut), frame.subarray(cut)])).toEqual({ messages: 1 });
  }
  expect(feed([frame, frame, frame])).toEqual({ messages: 3 });
});

test("frames cut anywhere come back equal and in order, even when chunks are reused", () => {
  const message = fc.record({
    type: fc.constant("blob"), time: fc.nat(), text: fc.string({ maxLength: 20 }),
    bytes: fc.uint8Array({ maxLength: 3000 }),
  });
  const cuts = fc.array(fc.nat({ max: 20_000 }), { maxLength: 12 });
  fc.assert(fc.property(fc.array(message, { maxLength: 8 }), cuts, (messages, cutPoints) => {
    const stream = Buffer.concat(messages.map((item) => encodeFrame(item)));
    const points = [...new Set(cutPoints.map((point) => point % (stream.length + 1)))]
      .sort((left, right) => left - right);
    const received: unknown[] = [];
    const reader = new FrameReader((value) => received.push(value));
    reader.payloadBytesMax = 1 << 20;
    let start = 0;
    // Like a socket's receive buffer, one scratch array is refilled for every chunk.
    const scratch = new Uint8Array(stream.length);
    for (const end of [...points, stream.length]) {
      const chunk = scratch.subarray(0, end - start);
      chunk.set(stream.subarray(start, end));
      reader.push(chunk);
      chunk.fill(0xee);
      start = end;
    }
    expect(received).toEqual(messages);
  }), propertyParameters("frame reassembly", 300));
});
