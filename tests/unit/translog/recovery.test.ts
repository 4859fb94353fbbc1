// Recovery edge cases: torn header, torn tail, corruption, and the two-slot position file.
import { describe, expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { Storage } from "../../../src/platform/types.ts";
import {
  PositionStore, positionFileName, positionSlotStrideBytes,
} from "../../../src/translog/position-store.ts";
import { openTranslog, type Translog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const logDirectory = "/home/r1/log";

async function open(storage: Storage, logfileBytesMax = 5000): Promise<Translog> {
  return openTranslog({
    storage, clock: new SimulatedClock(), directory: logDirectory, resource: "r1",
    host: "hostA", backing: await openFileDevice(storage, "/home/r1/disk", { createBytes: 65536 }),
    limits: { writer: { logfileBytesMax } },
  });
}

async function newStorage(): Promise<SimulatedStorage> {
  const storage = new SimulatedStorage(seededRandom(7));
  await storage.files.makeDirectory("/home/r1");
  return storage;
}

/** Writes `count` 1 KiB blocks (flushing each) and closes: several logfiles. */
async function fill(storage: Storage, count: number): Promise<void> {
  const device = await open(storage);
  for (let index = 0; index < count; index++) {
    await device.write(index * 1024, new Uint8Array(1024).fill(index + 1), { fua: true });
  }
  await device.close();
}

async function overwrite(storage: Storage, path: string, offset: number, bytes: Uint8Array) {
  const fd = await storage.files.open(path, {});
  await storage.io.submit([{ kind: "write", fd, offset, buffer: bytes },
    { kind: "fsync", fd, dataOnly: false }], { ordered: true });
  await storage.files.close(fd);
}

async function readBlock(device: Translog, index: number): Promise<number> {
  const target = new Uint8Array(1024);
  await device.read(index * 1024, target);
  return target[0]!;
}

describe("translog recovery", () => {
  test("a logfile whose header never became durable is removed; the data survives", async () => {
    const storage = await newStorage();
    await fill(storage, 6);
    const names = await storage.files.list(logDirectory);
    const last = names.filter((name) => name.startsWith("log-")).at(-1)!;
    const next = `log-${String(Number(last.slice(4, 13)) + 1).padStart(9, "0")}-hostA`;
    const fd = await storage.files.open(`${logDirectory}/${next}`, { create: true });
    await storage.files.close(fd);
    const device = await open(storage);
    expect(await readBlock(device, 5)).toBe(6);
    await device.close();
  });

  test("garbage after the last record is cut off and the device still opens", async () => {
    const storage = await newStorage();
    await fill(storage, 3);
    const names = (await storage.files.list(logDirectory)).filter((n) => n.startsWith("log-"));
    const path = `${logDirectory}/${names.at(-1)!}`;
    const size = storage.contentOf(path).length;
    await overwrite(storage, path, size, new Uint8Array(300).fill(0x4d));
    const device = await open(storage);
    expect(device.recovery.truncated?.offset).toBe(size);
    expect(await readBlock(device, 2)).toBe(3);
    await device.close();
  });

  test("a flipped byte in an older logfile stops recovery with defective-log", async () => {
    const storage = await newStorage();
    await fill(storage, 12);
    const path = `${logDirectory}/log-000000001-hostA`;
    // Nothing was written back yet in the position's view: drop the position to force replay.
    await storage.files.remove(`${logDirectory}/${positionFileName}`);
    await overwrite(storage, path, 400, new Uint8Array([0xff]));
    const failure = open(storage);
    await expect(failure).rejects.toMatchObject({ code: "defective-log" });
    await expect(failure).rejects.toThrow(/log-000000001-hostA: offset 256/);
  });

  test("a torn update of the position file keeps the previous position", async () => {
    const storage = await newStorage();
    await storage.files.makeDirectory(logDirectory);
    const store = await PositionStore.open(storage, logDirectory);
    await store.write({ sequence: 1, offsetBytes: 256 });
    await store.write({ sequence: 1, offsetBytes: 4000 }); // generation 2: slot 0
    await store.write({ sequence: 2, offsetBytes: 256 }); // generation 3: slot 1
    await store.close();
    const path = `${logDirectory}/${positionFileName}`;
    await overwrite(storage, path, positionSlotStrideBytes + 20, new Uint8Array([1, 2, 3]));
    const reopened = await PositionStore.open(storage, logDirectory);
    expect(reopened.current).toEqual({ sequence: 1, offsetBytes: 4000 });
    await reopened.close();
  });
});

describe("translog statistics", () => {
  test("rewrites of the same range in one batch are written back once", async () => {
    const storage = await newStorage();
    const device = await open(storage, 1 << 20);
    for (let round = 0; round < 5; round++) {
      await device.write(4096, new Uint8Array(1024).fill(round + 1), { fua: false });
    }
    await device.flush();
    await new Promise((resolve) => setImmediate(resolve));
    const statistics = device.statistics();
    expect(statistics.durableSequence).toBe(5);
    expect(statistics.superseded).toBe(4);
    expect(statistics.writtenBack).toBe(1);
    expect(await readBlock(device, 4)).toBe(5);
    await device.close();
  });
});

describe("translog failures", () => {
  test("a full store fails the log write with ENOSPC and later requests too", async () => {
    const storage = await newStorage();
    const device = await open(storage);
    storage.injectFault = (operation) => operation.kind === "write" ? "ENOSPC" : undefined;
    const write = device.write(0, new Uint8Array(1024).fill(1), { fua: true });
    await expect(write).rejects.toMatchObject({ errno: "ENOSPC" });
    await expect(device.flush()).rejects.toMatchObject({ errno: "ENOSPC" });
    storage.injectFault = undefined;
    await expect(device.close()).rejects.toMatchObject({ errno: "ENOSPC" });
  });
});
