/** The digest thread: sha256 of logfile content off the event loop (threaded-digest.ts). */
// Messages arrive in order. Aligned memory is read in place by address (same process, never
// unmapped); anything else arrives as a copy. A digest is written into shared memory and the
// waiting thread is woken with Atomics.notify.
import { toArrayBuffer } from "bun:ffi";
import type { DigestRequest } from "./threaded-digest.ts";

declare const self: Worker;

const hashers = new Map<number, Bun.CryptoHasher>();

self.onmessage = (event: MessageEvent<DigestRequest>) => {
  const request = event.data;
  switch (request.kind) {
    case "open":
      hashers.set(request.id, new Bun.CryptoHasher("sha256"));
      return;
    case "update": {
      const bytes = request.bytes ?? (request.lengthBytes === 0 ? new Uint8Array(0)
        : new Uint8Array(toArrayBuffer(request.address, 0, request.lengthBytes)));
      hashers.get(request.id)!.update(bytes);
      self.postMessage({ id: request.id, ordinal: request.ordinal });
      return;
    }
    case "digest": {
      const result: Uint8Array = hashers.get(request.id)!.copy().digest();
      const flag = new Int32Array(request.shared, 0, 1);
      new Uint8Array(request.shared, 4, 32).set(result);
      Atomics.store(flag, 0, 1);
      Atomics.notify(flag, 0);
      return;
    }
    case "close":
      hashers.delete(request.id);
  }
};
