// The winner's side of a split brain: the designated primary counts its own log after the split
// point a member's record names and publishes it; view shows both sides' bytes and records.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import { splitBrainRecords, splitBrainWords } from "../../../src/cli/split-brain-view.ts";
import { logfileHeaderBytes } from "../../../src/log/format.ts";
import { chainStartDigest, type LogPosition } from "../../../src/log/position.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import {
  SplitBrainRepair, splitBrainCheckIntervalMs, type SplitWinnerRecord,
} from "../../../src/roles/split-brain-repair.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

/** Logfile `sequence` by `origin` in /r with `records` trims of `bytesEach`; returns its end. */
async function logfile(
  storage: SimulatedStorage, clock: SimulatedClock, sequence: number, records: number,
): Promise<LogPosition> {
  const writer = await LogWriter.start({
    storage, clock, directory: "/r", resource: "r", origin: "beta",
    limits: { preallocateBytesMin: 0, preallocateBytesMax: 0 },
  }, { logfileSequence: sequence, firstRecordSequence: sequence * 1000, previousDigest:
    chainStartDigest, stampFloor: 0 });
  for (let index = 0; index < records; index++) {
    writer.append({ kind: "trim", deviceOffset: index * 512, lengthBytes: 512 });
    await writer.flush();
  }
  const end = writer.durableEnd;
  await writer.close();
  return end;
}

async function settle(clock: SimulatedClock): Promise<void> {
  for (let round = 0; round < 12; round++) {
    clock.advance(splitBrainCheckIntervalMs);
    for (let tick = 0; tick < 50; tick++) await Promise.resolve();
    await Bun.sleep(1);
  }
}

/** beta is primary and continued alpha's history at `split`; alpha's record names it. */
function winnerMap(split: LogPosition) {
  const map = new MetadataMap("beta", new LamportClock(() => 1000));
  let time = 10;
  const remote = (key: string, value: unknown) =>
    map.apply({ key, value, time: time++, host: "alpha", seq: 0 });
  map.set(keys.resourceMember("r", "beta"), { disk: "/disk" });
  remote(keys.resourceMember("r", "alpha"), { disk: "/disk" });
  map.set(keys.size("r"), 1 << 20);
  map.set(keys.primary("r"), "beta");
  remote(keys.splitBrain("r", "alpha"), {
    primary: "beta", splitPoint: split, localEnd: { sequence: 1, offsetBytes: 9000 },
    localBytesAfter: 4000, localRecordsAfter: 7, primaryEnd: null, reason: "test",
    detectedMs: 1, repairStartedMs: null,
  });
  return map;
}

function repairOf(map: MetadataMap, storage: SimulatedStorage, clock: SimulatedClock) {
  return new SplitBrainRepair({
    map, host: "beta", clock, storage, directoryOf: () => "/r",
    fetcherOf: () => undefined, resourceNames: () => ["r"], log: () => {},
  });
}

test("the primary publishes the bytes and records it wrote after a member's split point; " +
  "view shows both sides; a gap in its logfiles makes its side unknown", async () => {
  const storage = new SimulatedStorage(seededRandom(21));
  const clock = new SimulatedClock();
  await storage.files.makeDirectory("/r");
  const split = { sequence: 1, offsetBytes: 5000 };
  const endOf2 = await logfile(storage, clock, 2, 3);
  const endOf3 = await logfile(storage, clock, 3, 2);
  const map = winnerMap(split);
  const [before] = splitBrainWords(splitBrainRecords((key) => map.get(key), "r", ["alpha"]));
  expect(before).toContain("alpha-wrote=4000B/7records,beta-wrote=? "); // not counted yet
  const repair = repairOf(map, storage, clock);
  repair.start();
  await settle(clock);
  const published = map.get(keys.splitWinner("r", "beta")) as SplitWinnerRecord;
  const bytes = endOf2.offsetBytes - logfileHeaderBytes + endOf3.offsetBytes - logfileHeaderBytes;
  expect(published.writes).toEqual([{ splitPoint: split, end: endOf3, bytesAfter: bytes,
    recordsAfter: 5 }]);
  const records = splitBrainRecords((key) => map.get(key), "r", ["alpha", "beta"]);
  expect(records.alpha?.primaryBytesAfter).toBe(bytes);
  expect(records.alpha?.primaryRecordsAfter).toBe(5);
  const [word] = splitBrainWords(records);
  expect(word).toContain(`alpha-wrote=4000B/7records,beta-wrote=${bytes}B/5records`);

  // Once no member names beta, its count goes away.
  map.delete(keys.splitBrain("r", "alpha"));
  await settle(clock);
  expect(map.get(keys.splitWinner("r", "beta"))).toBeUndefined();
  repair.stop();

  // Logfile 2 gone (retention): beta's side is unknown, alpha's still known.
  await storage.files.remove("/r/log-000000002-beta");
  const gap = winnerMap(split);
  const again = repairOf(gap, storage, clock);
  again.start();
  await settle(clock);
  again.stop();
  const unknown = (gap.get(keys.splitWinner("r", "beta")) as SplitWinnerRecord).writes[0];
  expect(unknown?.bytesAfter).toBeNull();
  const [shown] = splitBrainWords(splitBrainRecords((key) => gap.get(key), "r", ["alpha"]));
  expect(shown).toContain("alpha-wrote=4000B/7records,beta-wrote=unknown");
});
