// Property 1: records survive encode/decode unchanged, and any single flipped bit is detected.
import { expect, test } from "bun:test";
import fc from "fast-check";
import {
  decodePayload, decodeRecordHeader, encodeRecord, logfileHeaderBytes, recordHeaderBytes,
  type RecordInput, type RecordPlacement,
} from "../../src/log/format.ts";
import { propertyParameters } from "../support/property.ts";

const payloadArbitrary = fc.oneof(
  fc.uint8Array({ minLength: 0, maxLength: 2048 }),
  // Repetitive data, so zstd kicks in.
  fc.tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 1, max: 4096 }))
    .map(([value, length]) => new Uint8Array(length).fill(value)),
);

const recordArbitrary = fc.record({
  kind: fc.constantFrom("write", "trim", "write-zeroes", "gap") as fc.Arbitrary<
    RecordInput["kind"]>,
  sequence: fc.integer({ min: 1, max: 2 ** 40 }),
  stamp: fc.integer({ min: 0, max: 2 ** 52 }),
  deviceOffset: fc.integer({ min: 0, max: 2 ** 44 }),
  rangeBytes: fc.integer({ min: 0, max: 2 ** 30 }),
  payload: payloadArbitrary,
  codec: fc.constantFrom("none", "zstd") as fc.Arbitrary<"none" | "zstd">,
  logfileSequence: fc.integer({ min: 1, max: 2 ** 32 }),
  batchStart: fc.integer({ min: logfileHeaderBytes, max: 2 ** 40 }),
  batchOffset: fc.integer({ min: 0, max: 2 ** 20 }),
  flipBit: fc.nat(),
});

type Generated = typeof recordArbitrary extends fc.Arbitrary<infer T> ? T : never;

function build(generated: Generated): { input: RecordInput; placement: RecordPlacement } {
  const write = generated.kind === "write";
  const input: RecordInput = {
    kind: generated.kind, sequence: generated.sequence, stamp: generated.stamp,
    deviceOffset: generated.deviceOffset,
    lengthBytes: write ? generated.payload.length : generated.rangeBytes,
    ...(write ? { payload: generated.payload } : {}),
  };
  const placement = {
    logfileSequence: generated.logfileSequence, batchStartOffset: generated.batchStart,
    fileOffset: generated.batchStart + generated.batchOffset,
  };
  return { input, placement };
}

/** Decodes a whole encoded record; a string says why it was rejected. */
function decode(bytes: Uint8Array, placement: RecordPlacement) {
  const header = decodeRecordHeader(bytes, placement.logfileSequence, placement.fileOffset);
  if (typeof header === "string") return header;
  if (bytes.length !== recordHeaderBytes + header.storedBytes) return "length mismatch";
  const payload = decodePayload(header, bytes.subarray(recordHeaderBytes));
  return typeof payload === "string" ? payload : { header, payload };
}

test("record encode/decode round-trips and every single flipped bit is detected", () => {
  fc.assert(fc.property(recordArbitrary, (generated) => {
    const { input, placement } = build(generated);
    const encoded = encodeRecord(input, placement, generated.codec);
    const decoded = decode(encoded, placement);
    if (typeof decoded === "string") throw new Error(`clean record rejected: ${decoded}`);
    expect(decoded.header.kind).toBe(input.kind);
    expect(decoded.header.sequence).toBe(input.sequence);
    expect(decoded.header.stamp).toBe(input.stamp);
    expect(decoded.header.deviceOffset).toBe(input.deviceOffset);
    expect(decoded.header.lengthBytes).toBe(input.lengthBytes);
    expect(decoded.header.fileOffset).toBe(placement.fileOffset);
    expect(decoded.header.batchStartOffset).toBe(placement.batchStartOffset);
    expect(Buffer.from(decoded.payload).equals(Buffer.from(input.payload ?? []))).toBe(true);

    const bit = generated.flipBit % (encoded.length * 8);
    const flipped = encoded.slice();
    flipped[bit >> 3]! ^= 1 << (bit & 7);
    expect(typeof decode(flipped, placement)).toBe("string");
    // The same bytes elsewhere in the file, or in another logfile, are misplaced.
    const moved = { ...placement, fileOffset: placement.fileOffset + 1 };
    expect(typeof decode(encoded, moved)).toBe("string");
    const foreign = { ...placement, logfileSequence: placement.logfileSequence + 1 };
    expect(typeof decode(encoded, foreign)).toBe("string");
  }), propertyParameters("record round trip and bit flips", 1000));
});
