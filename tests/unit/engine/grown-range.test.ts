// A growth cut short is zeroed again at attach, never a range the export already served.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import {
  forgetExportedSize, rangeToZero, readExportedSize, writeExportedSize, zeroBeforeExport,
} from "../../../src/engine/grown-range.ts";
import { scanLogfile } from "../../../src/log/reader.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const kibibyte = 1024;
const diskBytes = 256 * kibibyte;
const directory = "/home/r1";

test("the range to zero: above what the export reached, nothing without a record", () => {
  expect(rangeToZero(undefined, diskBytes)).toBeUndefined();
  expect(rangeToZero(diskBytes, diskBytes)).toBeUndefined();
  expect(rangeToZero(diskBytes, 128 * kibibyte)).toBeUndefined();
  expect(rangeToZero(128 * kibibyte, diskBytes))
    .toEqual({ fromBytes: 128 * kibibyte, toBytes: diskBytes });
});

/** One attach as primary: the translog over the disk, zeroed before export, then closed. */
async function attachAsPrimary(storage: SimulatedStorage, sizeBytes: number) {
  const translog = await openTranslog({
    storage, clock: new SimulatedClock(), directory, resource: "r1", host: "alpha",
    backing: await openFileDevice(storage, "/disk", { createBytes: diskBytes }),
  });
  await zeroBeforeExport(storage, directory, translog, sizeBytes);
  const content = new Uint8Array(diskBytes);
  await translog.read(0, content);
  await translog.close();
  return content;
}

async function loggedZeroes(storage: SimulatedStorage): Promise<string[]> {
  const ranges: string[] = [];
  for (const file of await listLogfiles(storage, directory)) {
    await scanLogfile(storage, file.path, {
      onRecord: (record) => {
        if (record.header.kind !== "write-zeroes") return;
        ranges.push(`${record.header.deviceOffset}+${record.header.lengthBytes}`);
      },
    });
  }
  return ranges;
}

test("restart in the middle of a growth: the key's new range is zeroed in the log again",
  async () => {
    const storage = new SimulatedStorage(seededRandom(3));
    await storage.files.makeDirectory(directory);
    // The first attach as primary records the size; nothing is zeroed.
    await attachAsPrimary(storage, 128 * kibibyte);
    expect(await readExportedSize(storage, directory)).toBe(128 * kibibyte);
    expect(await loggedZeroes(storage)).toEqual([]);

    // Garbage beyond the old size, and the key grew, but the engine stopped before zeroing.
    const disk = await openFileDevice(storage, "/disk");
    await disk.write(0, new Uint8Array(diskBytes).fill(7), { fua: true });
    await disk.close();
    const content = await attachAsPrimary(storage, diskBytes);
    expect(await loggedZeroes(storage)).toEqual([`${128 * kibibyte}+${128 * kibibyte}`]);
    expect(await readExportedSize(storage, directory)).toBe(diskBytes);
    expect(content.subarray(0, 128 * kibibyte).every((byte) => byte === 7)).toBe(true);
    expect(content.subarray(128 * kibibyte).every((byte) => byte === 0)).toBe(true);

    // Clients may now write there: neither the same size nor a smaller key zeroes it again.
    await attachAsPrimary(storage, diskBytes);
    await attachAsPrimary(storage, 192 * kibibyte);
    expect(await readExportedSize(storage, directory)).toBe(diskBytes);
    expect(await loggedZeroes(storage)).toHaveLength(1);
  });

test("after a period as secondary the old mark is gone: another primary's range is kept",
  async () => {
    const storage = new SimulatedStorage(seededRandom(4));
    await storage.files.makeDirectory(directory);
    await writeExportedSize(storage, directory, 128 * kibibyte);
    await forgetExportedSize(storage, directory);
    expect(await readExportedSize(storage, directory)).toBeUndefined();
    // Another primary grew to the whole disk and its clients wrote there (replayed here).
    const disk = await openFileDevice(storage, "/disk", { createBytes: diskBytes });
    await disk.write(128 * kibibyte, new Uint8Array(4096).fill(9), { fua: true });
    await disk.close();
    const content = await attachAsPrimary(storage, diskBytes);
    expect(await loggedZeroes(storage)).toEqual([]);
    expect(content[128 * kibibyte]).toBe(9);
    expect(await readExportedSize(storage, directory)).toBe(diskBytes);
  });

test("a damaged record refuses rather than guessing", async () => {
  const storage = new SimulatedStorage(seededRandom(5));
  await storage.files.makeDirectory(directory);
  const fd = await storage.files.open(`${directory}/exported-size`, { create: true });
  await storage.io.submit([{ kind: "write", fd, offset: 0, buffer: new Uint8Array([1, 2]) }]);
  await storage.files.close(fd);
  await expect(readExportedSize(storage, directory)).rejects.toThrow("damaged");
});
