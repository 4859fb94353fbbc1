// The space guard: a burst that would run the log out of space enters emergency mode instead.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { EmergencyDevice } from "../../../src/retention/emergency.ts";
import {
  logPreallocationReserveBytes, logSlackBytes, SpaceGuard,
} from "../../../src/retention/space-guard.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const mebibyte = 1024 * 1024;
const deviceBytes = mebibyte;
const writeBytes = 64 * 1024;
/**
 * Written in the burst: more than the free space (large batches extend the log without
 * preallocating, so the log grows by about what is written).
 */
const burstBytes = 88 * mebibyte;
const freeBytes = 80 * mebibyte;

/** A home of `freeBytes` free whose file growth fails with ENOSPC beyond it. */
async function fullingHome() {
  const storage = new SimulatedStorage(seededRandom(3));
  await storage.files.makeDirectory("/home/r1");
  const backing = await openFileDevice(storage, "/disk", { createBytes: deviceBytes });
  const direct = await openFileDevice(storage, "/disk");
  const used = (await storage.files.space("/")).totalBytes -
    (await storage.files.space("/")).freeBytes;
  storage.capacityBytes = used + freeBytes;
  const extents = new Map<number, number>();
  let grownBytes = 0;
  storage.injectFault = (operation) => {
    if (operation.kind !== "write") return undefined;
    const end = operation.offset + operation.buffer.length;
    const extent = extents.get(operation.fd) ?? 0;
    if (end <= extent) return undefined;
    if (grownBytes + end - extent > freeBytes) return "ENOSPC";
    grownBytes += end - extent;
    extents.set(operation.fd, end);
    return undefined;
  };
  const translog = await openTranslog({
    storage, clock: new SimulatedClock(), directory: "/home/r1", resource: "r1", host: "alpha",
    backing,
  });
  return { storage, device: new EmergencyDevice(translog, direct) };
}

async function burst(device: EmergencyDevice): Promise<number> {
  let failures = 0;
  const inFlight = new Set<Promise<void>>();
  for (let written = 0, index = 0; written < burstBytes; written += writeBytes, index++) {
    const data = new Uint8Array(writeBytes).fill(index & 255);
    const request: Promise<void> = device.write((index * writeBytes) % deviceBytes, data,
      { fua: false }).catch(() => void failures++).finally(() => inFlight.delete(request));
    inFlight.add(request);
    if (inFlight.size >= 16) await Promise.race(inFlight);
  }
  await Promise.all(inFlight);
  await device.flush().catch(() => void failures++);
  return failures;
}

test("without the guard the burst meets ENOSPC (the control)", async () => {
  const { device } = await fullingHome();
  expect(await burst(device)).toBeGreaterThan(0);
});

test("with the guard the burst enters emergency mode: no write fails, all read back", async () => {
  const { storage, device } = await fullingHome();
  const guard = new SpaceGuard(() => storage.files.space("/"));
  const shortOf: number[] = [];
  device.guardSpace(guard, (bytes) => shortOf.push(bytes));
  expect(await burst(device)).toBe(0);
  expect(shortOf.length).toBe(1);
  expect(device.mode).toBe("direct");
  const last = Math.round(burstBytes / writeBytes) - 1;
  const read = new Uint8Array(writeBytes);
  await device.read((last * writeBytes) % deviceBytes, read);
  expect(read.every((byte) => byte === (last & 255))).toBe(true);
  const space = await storage.files.space("/");
  expect(space.freeBytes).toBeGreaterThan(0);
  expect(guard.roomToLog(space.freeBytes, 1, 0)).toBe(
    space.freeBytes >= logPreallocationReserveBytes + logSlackBytes);
  await device.close();
});
