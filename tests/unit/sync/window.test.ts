// The copy's window: one slow chunk holds the cursor's prefix back, never the whole copy.
import { expect, test } from "bun:test";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import { memoryCursorStore } from "../../../src/sync/cursor.ts";
import {
  runFullSync, syncAheadChunksMax, syncWindowChunksMax, type SyncPeer,
} from "../../../src/sync/full-sync.ts";
import { localSyncSource } from "../../../src/sync/source.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";

const geometry = { blockBytes: 512, chunkBytes: 4096 };
const chunks = 400;

test("a first chunk that answers last: the copy runs ahead of it within the bound", async () => {
  const source = createMemoryDevice(chunks * geometry.chunkBytes);
  const target = createMemoryDevice(chunks * geometry.chunkBytes);
  for (let index = 0; index < source.bytes.length; index++) source.bytes[index] = index * 7;
  const local = localSyncSource({ host: "alpha", view: source, reads: "device-view",
    logEnd: () => ({ sequence: 1, offsetBytes: 0 }),
    writebackPosition: () => ({ sequence: 1, offsetBytes: 0 }) });
  // Chunk 0 answers only once 100 others did (more than the window, less than the bound).
  const heldUntil = 100;
  let answered = 0;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => { release = resolve; });
  const peer: SyncPeer = {
    ...local,
    compare: async (request) => {
      if (request.offsetBytes === 0) await held;
      const reply = await local.compare(request);
      if (++answered === heldUntil) release();
      return reply;
    },
  };
  const outcome = await runFullSync({ target, peer, cursors: memoryCursorStore(),
    clock: new SimulatedClock(), geometry, windowChunks: syncWindowChunksMax });
  expect(outcome.state).toBe("copied");
  expect(Buffer.compare(target.bytes, source.bytes)).toBe(0);
  expect(heldUntil).toBeGreaterThan(syncWindowChunksMax);
  expect(heldUntil).toBeLessThan(syncAheadChunksMax);
});
