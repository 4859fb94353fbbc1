/** A block device in memory: the reference model for tests and a backing for demos. */
import { assert } from "../lib/assert.ts";
import type { BlockCapabilities, BlockDevice } from "./types.ts";

/** Largest device this layer will hold, so a typo cannot allocate the machine away. */
export const memoryDeviceBytesMax = 4 * 1024 * 1024 * 1024;

export const memoryCapabilities: BlockCapabilities = {
  writable: true,
  flush: true,
  fua: "native",
  trim: true,
  writeZeroes: true,
  multiConnection: true,
  blockSizes: { minimumBytes: 1, preferredBytes: 4096, maximumBytes: 32 * 1024 * 1024 },
};

/** Unchecked on purpose: wrap with checkedBlockDevice at the boundary. */
export function createMemoryDevice(sizeBytes: number): BlockDevice & { bytes: Uint8Array } {
  assert(sizeBytes <= memoryDeviceBytesMax, `memory device ≤ ${memoryDeviceBytesMax} bytes`);
  const bytes = new Uint8Array(sizeBytes);
  return {
    bytes,
    sizeBytes,
    capabilities: memoryCapabilities,
    async read(offset, target) {
      target.set(bytes.subarray(offset, offset + target.length));
    },
    async write(offset, data) {
      bytes.set(data, offset);
    },
    async flush() {},
    async trim(offset, lengthBytes) {
      bytes.fill(0, offset, offset + lengthBytes);
    },
    async writeZeroes(offset, lengthBytes) {
      bytes.fill(0, offset, offset + lengthBytes);
    },
    async close() {},
  };
}
