// The old primary's step-down: it waits while its kernel device is held (mounted, open), seen
// through the injected holders look; its closed log end is durable across a restart.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import type { Attached, AttachSpec, ResourceAttacher } from "../../../src/engine/attach.ts";
import {
  connectionCheckIntervalMs, ResourceManager, type ActualState,
} from "../../../src/engine/resources.ts";
import { logfileName } from "../../../src/log/position.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { ClosedLogEnds, closedLogEndFileName } from "../../../src/roles/closed-log-end.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const closedEnd = { sequence: 3, offsetBytes: 4096 };

/** A primary attacher whose kernel device holders the test sets; records every look. */
function fakeAttacher() {
  const state = { holders: [] as string[], looks: [] as boolean[], attaches: [] as boolean[] };
  const attacher: ResourceAttacher = {
    async attach(spec: AttachSpec): Promise<Attached> {
      state.attaches.push(spec.primary);
      if (!spec.primary) return { exportAddress: "", detach: async () => {} };
      return {
        exportAddress: "/dev/nbd0 nbd+unix:///r",
        primaryLog: { logEnd: closedEnd, durableEnd: closedEnd, writebackPosition: closedEnd },
        openConnections: () => 0,
        kernelHolders: async (stepping) => {
          state.looks.push(stepping);
          return [...state.holders];
        },
        detach: async () => {},
      };
    },
  };
  return { state, attacher };
}

async function settle(clock: SimulatedClock, rounds = 12): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    clock.advance(connectionCheckIntervalMs);
    for (let tick = 0; tick < 50; tick++) await Promise.resolve();
    await Bun.sleep(1);
  }
}

test("a primary whose /dev/nbdN is held does not step down for a handover; it publishes the " +
  "holders, looks precisely before stepping down, and steps down once the device is closed",
async () => {
  const clock = new SimulatedClock();
  const map = new MetadataMap("alpha", new LamportClock(() => 1000));
  map.set(keys.resourceMember("r", "alpha"), { disk: "/disk" });
  map.set(keys.size("r"), 1 << 20);
  map.set(keys.todo("r", "alpha", "attach"), true);
  map.set(keys.primary("r"), "alpha");
  const { state, attacher } = fakeAttacher();
  const manager = new ResourceManager(map, "alpha", attacher,
    () => ({ socket: "/r.sock", logDirectory: "/r" }), clock, { log: () => {} });
  const actual = () => map.get(keys.actual("r", "alpha")) as ActualState;
  manager.request();
  await settle(clock);
  expect(actual().export).toContain("/dev/nbd0");
  expect(actual().deviceHolders).toEqual([]);

  state.holders = ["/dev/nbd0 mounted at /mnt/data"];
  await settle(clock);
  expect(actual().deviceHolders).toEqual(["/dev/nbd0 mounted at /mnt/data"]);
  expect(state.looks.every((stepping) => !stepping)).toBe(true); // no claim while not leaving

  map.set(keys.handover("r"), { from: "alpha", to: "beta", startedMs: 1 });
  await settle(clock);
  expect(actual().export).toContain("/dev/nbd0"); // still exporting under the mount
  expect(actual().closedLogEnd).toBeNull();
  expect(state.looks).toContain(true);
  expect(state.attaches).toEqual([true]);

  state.holders = [];
  await settle(clock);
  expect(actual().export).toBe("");
  expect(actual().primary).toBe(false);
  expect(actual().closedLogEnd).toEqual(closedEnd);
  expect(state.attaches).toEqual([true, false]);
  await manager.stop();
});

test("the closed log end survives a restart in the middle of a handover; it is void once this " +
  "host exports again, or once its logfile is gone", async () => {
  const storage = new SimulatedStorage(seededRandom(31));
  await storage.files.makeDirectory("/r");
  // The logfile the closed end lies in (this host's own, at least that long).
  const logfile = await storage.files.open(`/r/${logfileName(closedEnd.sequence, "alpha")}`,
    { create: true });
  await storage.files.truncate(logfile, closedEnd.offsetBytes);
  await storage.files.close(logfile);
  const map = new MetadataMap("alpha", new LamportClock(() => 1000));
  map.set(keys.resourceMember("r", "alpha"), { disk: "/disk" });
  map.set(keys.size("r"), 1 << 20);
  map.set(keys.todo("r", "alpha", "attach"), true);
  map.set(keys.primary("r"), "alpha");
  const start = (clock: SimulatedClock) => {
    const manager = new ResourceManager(map, "alpha", fakeAttacher().attacher,
      () => ({ socket: "/r.sock", logDirectory: "/r" }), clock, { log: () => {} },
      new ClosedLogEnds(storage, "alpha"));
    manager.request();
    return manager;
  };
  const actual = () => map.get(keys.actual("r", "alpha")) as ActualState;
  let clock = new SimulatedClock();
  let manager = start(clock);
  await settle(clock);
  map.set(keys.handover("r"), { from: "alpha", to: "beta", startedMs: 1 });
  await settle(clock);
  expect(actual().closedLogEnd).toEqual(closedEnd);
  await manager.stop();

  // A restart while the handover runs publishes the persisted end again.
  map.delete(keys.actual("r", "alpha"));
  clock = new SimulatedClock();
  manager = start(clock);
  await settle(clock);
  expect(actual().export).toBe("");
  expect(actual().closedLogEnd).toEqual(closedEnd);

  // The handover was given up: alpha exports again, and the persisted end goes first.
  map.delete(keys.handover("r"));
  await settle(clock);
  expect(actual().export).toContain("/dev/nbd0");
  expect(actual().closedLogEnd).toBeNull();
  expect(await storage.files.status(`/r/${closedLogEndFileName}`)).toBeUndefined();
  await manager.stop(); // a graceful stop closes the log: persisted again

  const ends = new ClosedLogEnds(storage, "alpha");
  expect(await ends.read("/r")).toEqual(closedEnd);
  await storage.files.remove(`/r/${logfileName(closedEnd.sequence, "alpha")}`);
  expect(await ends.read("/r")).toBeUndefined(); // its history was discarded (or retained away)
});
