// Growing devices (mars resize): the export bound, the checked size, a replica's disk.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, truncateSync } from "node:fs";
import { join } from "node:path";
import { checkedBlockDevice } from "../../../src/block/checked.ts";
import { openFileDevice } from "../../../src/block/file.ts";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import { BoundedDevice, growingFileDevice } from "../../../src/block/resizable.ts";
import { BlockError } from "../../../src/block/types.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import { temporaryDirectory } from "../../support/binary.ts";

const mib = 1024 * 1024;
const directory = temporaryDirectory("mars-resizable-");
const io = createPortableEngine();
const storage = { files: systemFiles, io };

afterAll(async () => {
  await io.close();
  rmSync(directory, { recursive: true, force: true });
});

describe("BoundedDevice behind the checked device", () => {
  test("serves the bound, refuses beyond it, and serves more once grown", async () => {
    const bounded = new BoundedDevice(createMemoryDevice(8 * mib), 4 * mib);
    const checked = checkedBlockDevice(bounded);
    expect(checked.sizeBytes).toBe(4 * mib);
    const data = new Uint8Array(4096).fill(7);
    const refused = await checked.write(4 * mib, data, { fua: false }).catch((error) => error);
    expect(refused).toBeInstanceOf(BlockError);
    expect((refused as BlockError).errno).toBe("EINVAL");
    bounded.grow(6 * mib);
    expect(checked.sizeBytes).toBe(6 * mib);
    await checked.write(4 * mib, data, { fua: false });
    const back = new Uint8Array(4096);
    await checked.read(4 * mib, back);
    expect(back).toEqual(data);
  });

  test("growing past the device below or shrinking is a bug", () => {
    const bounded = new BoundedDevice(createMemoryDevice(8 * mib), 4 * mib);
    expect(() => bounded.grow(9 * mib)).toThrow("covers the new size");
    expect(() => bounded.grow(2 * mib)).toThrow("only grows");
    expect(() => new BoundedDevice(createMemoryDevice(mib), 2 * mib)).toThrow("covers");
  });
});

describe("file device remeasure", () => {
  test("a disk grown underneath is served to its new end; it never shrinks", async () => {
    const path = join(directory, "grow.img");
    const file = await openFileDevice(storage, path, { createBytes: 2 * mib });
    expect(file.sizeBytes).toBe(2 * mib);
    truncateSync(path, 3 * mib);
    expect(await file.remeasure()).toBe(3 * mib);
    expect(file.sizeBytes).toBe(3 * mib);
    truncateSync(path, mib);
    expect(await file.remeasure()).toBe(3 * mib);
    await file.close();
  });
});

describe("growingFileDevice (a replica's disk)", () => {
  test("a write past the opened size measures again and goes on", async () => {
    const path = join(directory, "replica.img");
    const file = await openFileDevice(storage, path, { createBytes: 2 * mib });
    const device = growingFileDevice(file);
    truncateSync(path, 4 * mib);
    const data = new Uint8Array(8192).fill(3);
    await device.write(3 * mib, data, { fua: false });
    expect(device.sizeBytes).toBe(4 * mib);
    const back = new Uint8Array(8192);
    await device.read(3 * mib, back);
    expect(back).toEqual(data);
    await device.close();
  });

  test("a write past the disk itself fails with ENOSPC naming the disk", async () => {
    const path = join(directory, "small.img");
    const device = growingFileDevice(await openFileDevice(storage, path, { createBytes: mib }));
    const failed = await device.writeZeroes(mib, 4096, { fua: false, noHole: false })
      .catch((error) => error);
    expect(failed).toBeInstanceOf(BlockError);
    expect((failed as BlockError).errno).toBe("ENOSPC");
    expect((failed as BlockError).message).toContain(path);
    await device.close();
  });
});
