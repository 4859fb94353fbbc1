/** The one door to cbor-x: plain-object CBOR for control messages and metadata, pure JS only. */
import { Encoder } from "cbor-x";
import { MarsError } from "../lib/errors.ts";

// Plain maps decode as objects, no record extension and no shared structures: every frame is
// self-contained, so a peer of another version can always read it.
const codec = new Encoder({ useRecords: false, mapsAsObjects: true, tagUint8Array: false });

/** CBOR bytes of `value` (objects, arrays, strings, numbers, booleans, null, Uint8Array). */
export function encodeCbor(value: unknown): Uint8Array {
  // cbor-x may reuse its output buffer for the next call: copy before handing it out.
  return new Uint8Array(codec.encode(value));
}

/** The value in `bytes`; malformed input is an operating error ("protocol"), never a crash. */
export function decodeCbor(bytes: Uint8Array): unknown {
  try {
    return codec.decode(bytes);
  } catch (error) {
    throw new MarsError("protocol", `malformed CBOR (${bytes.length} bytes): ${String(error)}`);
  }
}
