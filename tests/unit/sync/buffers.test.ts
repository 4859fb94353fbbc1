// Chunk buffers: aligned ones up to their budget and always reused, ordinary ones beyond.
import { expect, test } from "bun:test";
import { ChunkBufferPool, ChunkBuffers } from "../../../src/sync/chunk.ts";

test("the pool allocates aligned buffers up to its budget, then ordinary ones", () => {
  const allocated: Uint8Array[] = [];
  const pool = new ChunkBufferPool(4096, (sizeBytes) => {
    const buffer = new Uint8Array(sizeBytes);
    allocated.push(buffer);
    return buffer;
  }, 2);
  const first = new ChunkBuffers(4096, 3, pool);
  const taken = [first.take(4096), first.take(1000), first.take(4096)];
  expect(allocated.length).toBe(2);
  expect(taken[1]!.length).toBe(1000);
  expect(() => first.take(10)).toThrow("chunk buffers in use stay within their limit");
  for (const buffer of taken) first.release(buffer);
  // A second user (another sync) gets the aligned buffers back first, and no new ones.
  const second = new ChunkBuffers(4096, 2, pool);
  const again = [second.take(4096), second.take(4096)];
  expect(again.map((buffer) => allocated.some((item) => item.buffer === buffer.buffer)))
    .toEqual([true, true]);
  expect(allocated.length).toBe(2);
});
