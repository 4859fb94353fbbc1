// The lifetime pass on a simulated home: deletion by published positions, emergency on space.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { EmergencyDevice } from "../../../src/retention/emergency.ts";
import {
  defaultLifetimeSettings, LifetimeService, lifetimeIntervalMs,
} from "../../../src/retention/service.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

async function setUp(positionPersistDelayMs = 1000) {
  const storage = new SimulatedStorage(seededRandom(5));
  const clock = new SimulatedClock();
  await storage.files.makeDirectory("/home/resources/r1");
  const translog = await openTranslog({
    storage, clock, directory: "/home/resources/r1", resource: "r1", host: "alpha",
    backing: await openFileDevice(storage, "/disk", { createBytes: 1 << 20 }),
    limits: { positionPersistDelayMs, writer: { logfileBytesMax: 20_000, preallocateBytesMin: 0,
      preallocateBytesMax: 0 } },
  });
  const device = new EmergencyDevice(translog, await openFileDevice(storage, "/disk"));
  const map = new MetadataMap("alpha", new LamportClock(() => clock.nowMs()));
  map.set(keys.resourceMember("r1", "alpha"), { disk: "/disk" });
  map.set(keys.primary("r1"), "alpha");
  map.apply({ key: keys.resourceMember("r1", "beta"), value: { disk: "/other" }, time: 10,
    host: "beta", seq: 10 });
  const events: string[] = [];
  const service = new LifetimeService({
    map, host: "alpha", storage, clock, homePath: "/home",
    // The simulated files have no modification times: only the byte limit applies here.
    settings: { ...defaultLifetimeSettings,
      retention: { lagBytesMax: 1 << 30, lagAgeMsMax: Number.MAX_SAFE_INTEGER } },
    replication: { replica: () => undefined }, log: (_level, event) => void events.push(event),
  });
  const detach = service.attachPrimary("r1", "/home/resources/r1", device);
  return { storage, clock, device, map, service, events, detach, translog };
}

/** Lets the service run `passes` passes (timers on the simulated clock, I/O in microtasks). */
async function run(clock: SimulatedClock, passes: number): Promise<void> {
  for (let pass = 0; pass < passes; pass++) {
    clock.advance(lifetimeIntervalMs);
    for (let turn = 0; turn < 50; turn++) await Promise.resolve();
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

const report = (sequence: number, offsetBytes: number) => ({
  status: "replaying", replayed: { sequence, offsetBytes },
});

let remoteTime = 1_000_000;
/** Beta's report as if it arrived from beta (owned keys are written only by their owner). */
function fromBeta(map: MetadataMap, value: unknown): void {
  remoteTime++;
  map.apply({ key: keys.replication("r1", "beta"), value, time: remoteTime, host: "beta",
    seq: remoteTime });
}

test("logfiles go once every member that reported a position passed them", async () => {
  const { storage, clock, device, map, service, events } = await setUp();
  for (let index = 0; index < 40; index++) {
    await device.write(index * 4096, new Uint8Array(4096).fill(index + 1), { fua: true });
  }
  const names = async () => (await listLogfiles(storage, "/home/resources/r1"))
    .map((file) => file.sequence);
  const before = await names();
  expect(before.length).toBeGreaterThan(4);
  map.set(keys.replication("r1", "alpha"), report(before.at(-1)!, 0));
  fromBeta(map, report(3, 0));
  await run(clock, 3);
  expect(await names()).toEqual(before.filter((sequence) => sequence >= 3));
  fromBeta(map, report(before.at(-1)!, 0));
  await run(clock, 3);
  expect(await names()).toEqual([before.at(-1)!]);
  expect(events).not.toContain("retention-dropped");
  service.stop();
  await device.close();
});

test("a home below the emergency floor switches the primary to direct writes, and back",
  async () => {
    const { storage, clock, device, map, service, events } = await setUp();
    fromBeta(map, report(1, 0));
    for (let index = 0; index < 10; index++) {
      await device.write(index * 4096, new Uint8Array(4096).fill(7), { fua: true });
    }
    storage.capacityBytes = (await storage.files.space("/")).totalBytes -
      (await storage.files.space("/")).freeBytes + 1000;
    await run(clock, 3);
    expect(device.mode).toBe("direct");
    expect(events).toContain("emergency-enter");
    await device.write(0, new Uint8Array(4096).fill(9), { fua: true });
    storage.capacityBytes = 2 ** 40;
    await run(clock, 3);
    expect(device.mode).toBe("logging");
    expect(events).toContain("emergency-leave");
    const read = new Uint8Array(4096);
    await device.read(0, read);
    expect(read[0]).toBe(9);
    service.stop();
    await device.close();
  });

test("the primary keeps every logfile from its persisted writeback position on", async () => {
  // Persisting is lazy: writeback runs ahead of the last persisted position, and a crash
  // recovers from the persisted one, so its logfile must survive the lifetime pass.
  const { storage, clock, device, map, service, translog } = await setUp(1e12);
  for (let index = 0; index < 40; index++) {
    await device.write(index * 4096, new Uint8Array(4096).fill(index + 1), { fua: true });
  }
  const names = async () => (await listLogfiles(storage, "/home/resources/r1"))
    .map((file) => file.sequence);
  const before = await names();
  expect(translog.writebackPosition.sequence).toBeGreaterThan(translog.persistedPosition.sequence);
  fromBeta(map, report(before.at(-1)!, 0));
  await run(clock, 3);
  expect((await names())[0]).toBe(translog.persistedPosition.sequence);
  await translog.persistPosition();
  await run(clock, 3);
  expect(await names()).toEqual([before.at(-1)!]);
  service.stop();
  await device.close();
});
