// Emergency mode never goes direct without a durable gap record: the writes fail with EIO.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { BlockError } from "../../../src/block/types.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { EmergencyDevice } from "../../../src/retention/emergency.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const deviceBytes = 64 * 1024;

test("a failed gap record with a drain that succeeds: no direct writes, writes fail EIO",
  async () => {
    const storage = new SimulatedStorage(seededRandom(5));
    await storage.files.makeDirectory("/home/r1");
    const translog = await openTranslog({
      storage, clock: new SimulatedClock(), directory: "/home/r1", resource: "r1",
      host: "alpha",
      backing: await openFileDevice(storage, "/disk", { createBytes: deviceBytes }),
    });
    // A stand-in for a log that cannot take the gap record but drains (the real one fails).
    let drains = 0;
    const drain = translog.drain.bind(translog);
    Object.assign(translog, {
      markGap: () => Promise.reject(new BlockError("EIO", "gap append failed")),
      drain: () => {
        drains++;
        return drain();
      },
    });
    const device = new EmergencyDevice(translog, await openFileDevice(storage, "/disk"));
    await device.write(0, new Uint8Array(4096).fill(1), { fua: true });

    const errnoOf = (promise: Promise<void>) =>
      promise.then(() => "ok", (error: unknown) => (error as BlockError).errno);
    const entered = device.enter();
    // Waits at the gate while the switch runs, then meets the broken log.
    const waiting = errnoOf(device.write(4096, new Uint8Array(4096).fill(2), { fua: false }));
    await expect(entered).rejects.toThrow("gap record is not durable");
    expect(drains).toBe(0);
    expect(device.mode).toBe("logging");
    expect(device.emergency).toBe(false);
    expect(device.gapProblem).toContain("gap append failed");
    expect(await waiting).toBe("EIO");
    expect(await errnoOf(device.write(0, new Uint8Array(4096), { fua: false }))).toBe("EIO");
    expect(await errnoOf(device.trim(0, 4096, { fua: false }))).toBe("EIO");
    expect(await errnoOf(device.writeZeroes(0, 4096, { fua: false, noHole: false })))
      .toBe("EIO");
    expect(await errnoOf(device.flush())).toBe("EIO");
    await expect(device.enter()).rejects.toThrow("gap record is not durable");
    // Reads go on; the disk holds only what was logged before.
    const read = new Uint8Array(8192);
    await device.read(0, read);
    expect(read[0]).toBe(1);
    expect(read[4096]).toBe(0);
    await device.close();
  });
