// Zeroing ranges on a file device: fallocate where it can, written zeroes where it cannot.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { fileZeroBatchWritesMax, fileZeroChunkBytesMax, openFileDevice } from
  "../../../src/block/file.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { IoEngine } from "../../../src/platform/types.ts";
import { temporaryDirectory } from "../../support/binary.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const gib = 1024 ** 3;
const mib = 1024 ** 2;
const directories: string[] = [];
afterAll(() => directories.forEach((path) => rmSync(path, { recursive: true, force: true })));

async function readAt(device: { read(offset: number, target: Uint8Array): Promise<void> },
  offset: number, lengthBytes: number): Promise<Uint8Array> {
  const target = new Uint8Array(lengthBytes);
  await device.read(offset, target);
  return target;
}

const engines: Record<string, () => IoEngine> = {
  portable: createPortableEngine,
  automatic: () => openIoEngine().engine,
};

for (const [engineName, engine] of Object.entries(engines)) {
  describe(`file device zeroing (${engineName} engine)`, () => {
    test("8 GiB of a sparse file is zeroed without writing it", async () => {
      const directory = temporaryDirectory("mars-file-zeroes-");
      directories.push(directory);
      const path = join(directory, "disk.img");
      const storage = { files: systemFiles, io: engine() };
      const device = await openFileDevice(storage, path,
        { createBytes: 8 * gib, directWrites: true });
      const pattern = new Uint8Array(mib).fill(0x5a);
      await device.write(5 * gib, pattern, { fua: false });
      await device.write(7 * gib, pattern, { fua: false });
      await device.write(3 * gib, pattern, { fua: false });
      const startedMs = performance.now();
      await device.writeZeroes(0, 6 * gib, { fua: true, noHole: false });
      await device.trim(7 * gib, gib, { fua: false });
      await device.writeZeroes(3 * gib, 4096, { fua: false, noHole: true });
      const elapsedMs = performance.now() - startedMs;
      expect(await readAt(device, 5 * gib, mib)).toEqual(new Uint8Array(mib));
      expect(await readAt(device, 7 * gib, mib)).toEqual(new Uint8Array(mib));
      // 10 GiB written as zeroes would take many seconds and leave blocks allocated.
      expect(elapsedMs).toBeLessThan(5_000);
      expect(statSync(path).blocks * 512).toBeLessThan(16 * mib);
      expect(device.sizeBytes).toBe(8 * gib);
      await device.close();
      await storage.io.close();
    });
  });
}

describe("file device zeroing where fallocate is refused", () => {
  test("zeroes are written, in batches, and the refusal is remembered", async () => {
    const storage = new SimulatedStorage(seededRandom(11));
    let refused = 0;
    storage.injectFault = (operation) => {
      if (operation.kind !== "fallocate") return undefined;
      refused++;
      return "EOPNOTSUPP";
    };
    const sizeBytes = fileZeroChunkBytesMax * fileZeroBatchWritesMax * 2 + 3 * mib;
    const device = await openFileDevice(storage, "/disk.img", { createBytes: sizeBytes });
    const pattern = new Uint8Array(mib).fill(0x33);
    for (const offset of [0, sizeBytes / 2, sizeBytes - mib]) {
      await device.write(offset, pattern, { fua: false });
    }
    await device.writeZeroes(0, sizeBytes, { fua: true, noHole: false });
    await device.trim(0, 4096, { fua: false });
    for (const offset of [0, sizeBytes / 2, sizeBytes - mib]) {
      expect(await readAt(device, offset, mib)).toEqual(new Uint8Array(mib));
    }
    expect(refused).toBe(2); // punch-hole once, zero-range once; never asked again
    await device.close();
  });
});
