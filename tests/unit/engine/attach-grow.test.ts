// A primary's export grows only after the added range's zeroes are durable in its log.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { directAttacher, type AttachSpec, type KernelDevice } from "../../../src/engine/attach.ts";
import { readExportedSize } from "../../../src/engine/grown-range.ts";
import { comparePositions, type LogPosition } from "../../../src/log/position.ts";
import { scanLogfile } from "../../../src/log/reader.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../../support/simulated-network.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const kibibyte = 1024;
const oldBytes = 128 * kibibyte;
const newBytes = 256 * kibibyte;
const directory = "/home/resources/r1";

interface KernelSeen {
  readonly sizeBytes: number;
  readonly exportedBytes: number;
  readonly durableEnd: LogPosition;
  readonly logEnd: LogPosition;
}

async function world() {
  const storage = new SimulatedStorage(seededRandom(8));
  await storage.files.makeDirectory("/home");
  await storage.files.makeDirectory("/home/resources");
  await storage.files.makeDirectory(directory);
  // The disk grew already and holds garbage beyond the resource's size.
  const disk = await openFileDevice(storage, "/disk", { createBytes: newBytes });
  await disk.write(0, new Uint8Array(newBytes).fill(0xee), { fua: true });
  await disk.close();
  const clock = new SimulatedClock();
  const seen: KernelSeen[] = [];
  let handle: Awaited<ReturnType<ReturnType<typeof directAttacher>["attach"]>> | undefined;
  const kernel: KernelDevice = {
    devicePath: "/dev/nbd9",
    holders: async () => [],
    resize: (sizeBytes) => {
      const log = handle!.primaryLog!;
      seen.push({ sizeBytes, exportedBytes: handle!.primaryDevice!.sizeBytes,
        durableEnd: log.durableEnd, logEnd: log.logEnd });
    },
    detach: () => {},
  };
  const attacher = directAttacher({
    clock, storage, network: new SimulatedStreamNetwork(clock).view("alpha"),
    locks: { tryLock: async () => ({ release: async () => {} }) },
    kernel: async () => kernel,
  });
  const spec = (primary: boolean, sizeBytes: number): AttachSpec => ({
    resource: "r1", host: "alpha", disk: "/disk", sizeBytes, primary,
    socketPath: "/home/resources/r1.nbd.sock", logDirectory: directory,
  });
  const attach = async (primary: boolean, sizeBytes: number) => {
    handle = await attacher.attach(spec(primary, sizeBytes));
    return handle;
  };
  const zeroRecords = async () => {
    const ranges: string[] = [];
    for (const file of await listLogfiles(storage, directory)) {
      await scanLogfile(storage, file.path, {
        onRecord: ({ header }) => {
          if (header.kind === "write-zeroes") {
            ranges.push(`${header.deviceOffset}+${header.lengthBytes}`);
          }
        },
      });
    }
    return ranges;
  };
  return { storage, attach, seen, zeroRecords };
}

test("grow: zeroes logged and durable, size recorded, then the bound, then the kernel",
  async () => {
    const { storage, attach, seen, zeroRecords } = await world();
    const handle = await attach(true, oldBytes);
    expect(await readExportedSize(storage, directory)).toBe(oldBytes);
    const before = handle.primaryLog!.logEnd;
    const growing = handle.grow!(newBytes);
    // Nobody may write into the new range while the zeroes are on their way.
    expect(handle.primaryDevice!.sizeBytes).toBe(oldBytes);
    expect(await growing).toBe("");
    expect(seen).toHaveLength(1);
    const atKernel = seen[0]!;
    expect(atKernel.sizeBytes).toBe(newBytes);
    expect(atKernel.exportedBytes).toBe(newBytes);
    expect(comparePositions(atKernel.logEnd, before)).toBeGreaterThan(0);
    expect(comparePositions(atKernel.durableEnd, atKernel.logEnd)).toBe(0);
    expect(await readExportedSize(storage, directory)).toBe(newBytes);
    const content = new Uint8Array(newBytes);
    await handle.primaryDevice!.read(0, content);
    expect(content.subarray(0, oldBytes).every((byte) => byte === 0xee)).toBe(true);
    expect(content.subarray(oldBytes).every((byte) => byte === 0)).toBe(true);
    await handle.detach();
    expect(await zeroRecords()).toEqual([`${oldBytes}+${oldBytes}`]);

    // A restart with the same size zeroes nothing again; a secondary attach forgets the mark.
    await (await attach(true, newBytes)).detach();
    expect(await zeroRecords()).toHaveLength(1);
    await (await attach(false, newBytes)).detach();
    expect(await readExportedSize(storage, directory)).toBeUndefined();
  });

test("attach with a size key above the recorded reach zeroes before exporting", async () => {
  const { storage, attach, zeroRecords } = await world();
  await (await attach(true, oldBytes)).detach();
  // The size key grew while the engine was down (or it stopped before the zeroes).
  const handle = await attach(true, newBytes);
  expect(handle.primaryDevice!.sizeBytes).toBe(newBytes);
  const content = new Uint8Array(newBytes);
  await handle.primaryDevice!.read(0, content);
  expect(content.subarray(oldBytes).every((byte) => byte === 0)).toBe(true);
  await handle.detach();
  expect(await zeroRecords()).toEqual([`${oldBytes}+${oldBytes}`]);
  expect(await readExportedSize(storage, directory)).toBe(newBytes);
});
