// Roles: who exports during a handover, split-brain detection from own logfiles, set-aside.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import { chainStartDigest, type LogPosition } from "../../../src/log/position.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { primaryWanted } from "../../../src/roles/designation.ts";
import { setAsideOwnLogfiles } from "../../../src/roles/set-aside.ts";
import {
  SplitBrainRepair, splitBrainCheckIntervalMs, type SplitBrainRecord,
} from "../../../src/roles/split-brain-repair.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

test("the designated primary exports unless a handover takes the role from it", () => {
  expect(primaryWanted("alpha", undefined, "alpha")).toBe(true);
  expect(primaryWanted("alpha", undefined, "beta")).toBe(false);
  expect(primaryWanted("", undefined, "alpha")).toBe(false);
  const handover = { from: "alpha", to: "beta", startedMs: 1 };
  expect(primaryWanted("alpha", handover, "alpha")).toBe(false);
  expect(primaryWanted("beta", handover, "beta")).toBe(true);
  expect(primaryWanted("alpha", { nonsense: true }, "alpha")).toBe(true);
});

/** A directory with `records` trims logged by `origin` in logfile 1; returns its end. */
async function ownLog(storage: SimulatedStorage, clock: SimulatedClock, records: number) {
  await storage.files.makeDirectory("/r");
  const writer = await LogWriter.start({
    storage, clock, directory: "/r", resource: "r", origin: "alpha",
    limits: { preallocateBytesMin: 0, preallocateBytesMax: 0 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  const ends: LogPosition[] = [];
  for (let index = 0; index < records; index++) {
    writer.append({ kind: "trim", deviceOffset: index * 512, lengthBytes: 512 });
    await writer.flush();
    ends.push(writer.durableEnd);
  }
  await writer.close();
  return ends;
}

async function settle(clock: SimulatedClock): Promise<void> {
  for (let round = 0; round < 20; round++) {
    clock.advance(splitBrainCheckIntervalMs);
    for (let tick = 0; tick < 50; tick++) await Promise.resolve();
    await Bun.sleep(1);
  }
}

function cluster(continuedFrom: LogPosition) {
  const map = new MetadataMap("alpha", new LamportClock(() => 1000));
  let time = 10;
  const remote = (key: string, value: unknown, host = "beta") =>
    map.apply({ key, value, time: time++, host, seq: 0 });
  remote(keys.resourceMember("r", "beta"), { disk: "/disk" });
  map.set(keys.resourceMember("r", "alpha"), { disk: "/disk" });
  remote(keys.size("r"), 1 << 20);
  remote(keys.primary("r"), "beta");
  remote(keys.actual("r", "beta"), { continuedFrom });
  return map;
}

test("a former primary whose own logfiles end past where the primary's log continues is in " +
  "split brain: shown, held by pause-sync, then invalidated once; an equal end is not",
async () => {
  const storage = new SimulatedStorage(seededRandom(11));
  const clock = new SimulatedClock();
  const ends = await ownLog(storage, clock, 4);
  const make = (map: MetadataMap) => new SplitBrainRepair({
    map, host: "alpha", clock, storage, directoryOf: () => "/r",
    fetcherOf: () => ({ state: "streaming", problem: "" }), resourceNames: () => ["r"],
    log: () => {},
  });
  const equal = cluster(ends[3]!);
  const quiet = make(equal);
  quiet.start();
  await settle(clock);
  quiet.stop();
  expect(equal.get(keys.splitBrain("r", "alpha"))).toBeUndefined();
  expect(equal.get(keys.invalidate("r", "alpha"))).toBeUndefined();

  const split = cluster(ends[1]!);
  split.set(keys.todo("r", "alpha", "sync"), false);
  const repair = make(split);
  repair.start();
  await settle(clock);
  const held = split.get(keys.splitBrain("r", "alpha")) as SplitBrainRecord;
  expect(held.splitPoint).toEqual(ends[1]!);
  expect(held.localEnd).toEqual(ends[3]!);
  expect(held.localBytesAfter).toBe(ends[3]!.offsetBytes - ends[1]!.offsetBytes);
  expect(held.localRecordsAfter).toBe(2);
  expect(held.repairStartedMs).toBeNull();
  expect(split.get(keys.invalidate("r", "alpha"))).toBeUndefined();
  split.set(keys.todo("r", "alpha", "sync"), true);
  await settle(clock);
  expect((split.get(keys.splitBrain("r", "alpha")) as SplitBrainRecord).repairStartedMs)
    .not.toBeNull();
  expect(split.get(keys.invalidate("r", "alpha"))).toBeDefined();
  split.delete(keys.invalidate("r", "alpha"));
  await settle(clock);
  expect(split.get(keys.invalidate("r", "alpha"))).toBeUndefined(); // once per split
  repair.stop();
});

test("set-aside moves only the logfiles this host wrote, into split-brain-TIME/", async () => {
  const storage = new SimulatedStorage(seededRandom(12));
  await storage.files.makeDirectory("/r");
  for (const name of ["log-000000001-alpha", "log-000000002-beta", "writeback-position"]) {
    await storage.files.close(await storage.files.open(`/r/${name}`, { create: true }));
  }
  const aside = await setAsideOwnLogfiles(storage, "/r", "alpha", Date.UTC(2026, 10, 26));
  expect(aside?.moved).toBe(1);
  expect(aside?.path).toBe("/r/split-brain-2026-11-26T00-00-00-000Z");
  expect((await storage.files.list("/r")).sort()).toEqual([
    "log-000000002-beta", "split-brain-2026-11-26T00-00-00-000Z", "writeback-position",
  ]);
  expect(await storage.files.list(aside!.path)).toEqual(["log-000000001-alpha"]);
  expect(await setAsideOwnLogfiles(storage, "/r", "gamma", 0)).toBeUndefined();
});
