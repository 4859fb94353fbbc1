// Sync pieces: chunk replies carry exactly the differing blocks, malformed replies are refused,
// and the cursor file survives a crash as its old or new content.
import { describe, expect, test } from "bun:test";
import { MarsError } from "../../../src/lib/errors.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import {
  answerChunk, blockDigests, checkRequest, patchesOf, type ChunkRequest,
} from "../../../src/sync/chunk.ts";
import { fileCursorStore, type SyncCursor } from "../../../src/sync/cursor.ts";
import { parseSyncMessage } from "../../../src/sync/wire.ts";
import { xxHash3 } from "../../../src/platform/hash.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

function request(target: Uint8Array, blockBytes: number): ChunkRequest {
  return {
    offsetBytes: 0, lengthBytes: target.length, blockBytes,
    digests: blockDigests(target, blockBytes),
  };
}

describe("chunk comparison", () => {
  test("only differing blocks travel, and patching makes the target equal", () => {
    const source = new Uint8Array(10 * 512 + 512).map((_, index) => index & 255);
    const target = source.slice();
    for (const index of [5, 4 * 1024 + 3, target.length - 1]) target[index] = target[index]! ^ 1;
    const ask = request(target, 1024);
    const reply = answerChunk(ask, source);
    expect(reply.blockIndexes).toEqual([0, 4, 5]);
    for (const patch of patchesOf(ask, reply)) target.set(patch.data, patch.offsetBytes);
    expect(Buffer.compare(target, source)).toBe(0);
  });

  test("identical chunks send nothing", () => {
    const data = new Uint8Array(8192).fill(3);
    const reply = answerChunk(request(data, 4096), data);
    expect(reply.blockIndexes).toEqual([]);
    expect(reply.compressed.length).toBe(0);
  });

  test("a reply with indexes out of order or wrong byte count is a protocol error", () => {
    const data = new Uint8Array(4096);
    const ask = request(data, 1024);
    const good = answerChunk(ask, new Uint8Array(4096).fill(1));
    const shuffled = { ...good, blockIndexes: [1, 0, 2, 3] };
    expect(() => patchesOf(ask, shuffled)).toThrow(MarsError);
    const short = { ...good, blockIndexes: [0, 1, 2] };
    expect(() => patchesOf(ask, short)).toThrow(MarsError);
    expect(() => patchesOf(ask, { ...good, offsetBytes: 4096 })).toThrow(MarsError);
  });

  test("a request outside the device or with the wrong digest count is refused", () => {
    const ask = request(new Uint8Array(4096), 1024);
    expect(() => checkRequest(ask, 4096)).not.toThrow();
    expect(() => checkRequest(ask, 2048)).toThrow(MarsError);
    expect(() => checkRequest({ ...ask, digests: new BigUint64Array(3) }, 8192)).toThrow();
    expect(() => checkRequest({ ...ask, blockBytes: 100 }, 8192)).toThrow(MarsError);
  });
});

describe("sync cursor file", () => {
  const cursor: SyncCursor = {
    phase: "copy", source: "alpha", sizeBytes: 1 << 20, copiedBytes: 4096,
    startPosition: { sequence: 3, offsetBytes: 80 }, startedMs: 1,
  };

  test("round-trips and clears", async () => {
    const storage = new SimulatedStorage(seededRandom(1));
    await storage.files.makeDirectory("/home/resources/r");
    const store = fileCursorStore(storage, "/home/resources/r");
    expect(await store.load()).toBeUndefined();
    await store.save(cursor);
    expect(await store.load()).toEqual(cursor);
    const sealed = { ...cursor, phase: "replay" as const, copiedBytes: cursor.sizeBytes,
      endPosition: { sequence: 4, offsetBytes: 0 } };
    await store.save(sealed);
    expect(await store.load()).toEqual(sealed);
    await store.clear();
    expect(await store.load()).toBeUndefined();
  });

  test("after a crash the cursor is the old or the new one, never torn", async () => {
    for (let seed = 1; seed <= 30; seed++) {
      const storage = new SimulatedStorage(seededRandom(seed));
      await storage.files.makeDirectory("/home/r");
      const store = fileCursorStore(storage, "/home/r");
      await store.save(cursor);
      const saving = store.save({ ...cursor, copiedBytes: 8192 });
      const rebooted = storage.crash();
      void saving.catch(() => {});
      const loaded = await fileCursorStore(rebooted, "/home/r").load();
      expect([4096, 8192]).toContain(loaded!.copiedBytes);
    }
  });

  test("a cursor that breaks its invariants is refused", async () => {
    const storage = new SimulatedStorage(seededRandom(2));
    await storage.files.makeDirectory("/r");
    const store = fileCursorStore(storage, "/r");
    expect(store.save({ ...cursor, copiedBytes: cursor.sizeBytes + 1 })).rejects.toThrow();
  });
});

test("a whole-chunk digest answers an equal chunk at once; a differing one goes block by block",
  () => {
    const source = new Uint8Array(64 * 1024).map((_, index) => index * 31);
    const target = source.slice();
    const equal = answerChunk({ ...request(target, 4096), chunkDigest: xxHash3(target) }, source);
    expect(equal.blockIndexes).toEqual([]);
    target[5000] = target[5000]! ^ 1;
    const differing = answerChunk({ ...request(target, 4096), chunkDigest: xxHash3(target) },
      source);
    expect(differing.blockIndexes).toEqual([1]);
    expect(() => parseSyncMessage({ type: "sync-compare", offset: 0, length: 4096,
      blockBytes: 4096, digests: new Uint8Array(8), chunkDigest: new Uint8Array(9) }, 1))
      .toThrow("chunk digest");
  });
