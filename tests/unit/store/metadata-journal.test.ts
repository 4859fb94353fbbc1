// The metadata journal: saves append changes; a crash keeps every acknowledged save, no more.
import { expect, test } from "bun:test";
import type { WireEntry } from "../../../src/cluster/metadata-map.ts";
import type { FileLocks } from "../../../src/platform/types.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { Home, homeFiles, homeFormat, type MetadataSnapshot } from "../../../src/store/home.ts";
import { decodeRecords, encodeRecord } from "../../../src/store/metadata-journal.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const noLocks: FileLocks = { tryLock: async () => undefined };

function entry(index: number): WireEntry {
  return { key: `user/k${index}`, value: { index }, time: 1000 + index, host: "alpha",
    seq: index + 1 };
}

/** The state after `count` writes, as a full snapshot. */
function snapshotOf(count: number): MetadataSnapshot {
  return {
    format: homeFormat, lamportTime: 1000 + count, seqHigh: count, peers: {}, held: [],
    entries: Array.from({ length: count }, (_, index) => entry(index)),
  };
}

/** Saves write `index` as changes (or, every `snapshotEvery`, as a full snapshot). */
async function save(home: Home, index: number, snapshotEvery: number): Promise<void> {
  if (index % snapshotEvery === 0) return home.writeMetadata(snapshotOf(index + 1));
  await home.saveMetadata({
    lamportTime: 1001 + index, seqHigh: index + 1, peers: {}, held: [], entries: [entry(index)],
  }, () => snapshotOf(index + 1));
}

/** Awaits `promise`, performing the storage's queued operations meanwhile (manual I/O). */
async function drive<T>(storage: SimulatedStorage, promise: Promise<T>): Promise<T> {
  let done = false;
  void promise.finally(() => { done = true; });
  while (!done) {
    for (let turn = 0; turn < 50; turn++) await Promise.resolve();
    storage.step();
  }
  return promise;
}

function keysOf(snapshot: MetadataSnapshot | undefined): string[] {
  return (snapshot?.entries ?? []).map((item) => item.key).sort();
}

test("saves append to the journal and read back merged onto the snapshot", async () => {
  const storage = new SimulatedStorage(seededRandom(1));
  await storage.files.makeDirectory("/home");
  const home = new Home("/home", storage, noLocks);
  for (let index = 0; index < 20; index++) await save(home, index, 8);
  const read = await new Home("/home", storage, noLocks).readMetadata();
  expect(keysOf(read)).toEqual(keysOf(snapshotOf(20)));
  expect(read?.seqHigh).toBe(20);
  // The journal holds only what came after the last snapshot (write 16): three records.
  const journal = storage.contentOf(`/home/${homeFiles.metadataJournal}`);
  expect(decodeRecords(journal, 3).records.map((record) => record.seqHigh)).toEqual([18, 19, 20]);
});

test("a torn record at the journal's end is ignored, and the next save replaces it", async () => {
  const storage = new SimulatedStorage(seededRandom(2));
  await storage.files.makeDirectory("/home");
  const home = new Home("/home", storage, noLocks);
  for (let index = 0; index < 3; index++) await save(home, index, 100);
  const torn = encodeRecord({ generation: 1, lamportTime: 5000, seqHigh: 9, peers: {}, held: [],
    entries: [entry(8)] }).subarray(0, 20);
  const path = `/home/${homeFiles.metadataJournal}`;
  const fd = await storage.files.open(path, {});
  const end = storage.contentOf(path).length;
  await storage.io.submit([{ kind: "write", fd, offset: end, buffer: torn }]);
  await storage.files.close(fd);
  const reader = new Home("/home", storage, noLocks);
  expect(keysOf(await reader.readMetadata())).toEqual(keysOf(snapshotOf(3)));
  await save(reader, 3, 100);
  expect(storage.contentOf(path).length).toBeLessThan(end + 200);
  expect(keysOf(await new Home("/home", storage, noLocks).readMetadata()))
    .toEqual(keysOf(snapshotOf(4)));
});

test("property: after a crash at any point, the home holds every acknowledged save", async () => {
  for (let seed = 1; seed <= 150; seed++) {
    const random = seededRandom(seed);
    const setup = new SimulatedStorage(random);
    await setup.files.makeDirectory("/home");
    const storage = setup.withManualIo();
    const home = new Home("/home", storage, noLocks);
    let acknowledged = 0;
    const saves = (async () => {
      for (let index = 0; index < 12; index++) {
        await save(home, index, 5);
        acknowledged = index + 1;
      }
    })();
    const steps = random.nextUint32() % 60;
    for (let step = 0; step < steps; step++) {
      for (let turn = 0; turn < 50; turn++) await Promise.resolve();
      if (!storage.step()) break; // every save done
    }
    void saves;
    const rebooted = storage.crash();
    const read = await drive(rebooted, new Home("/home", rebooted, noLocks).readMetadata());
    const count = read?.entries.length ?? 0;
    // Every acknowledged save survives; at most the one in flight is there besides.
    expect(count).toBeGreaterThanOrEqual(acknowledged);
    expect(count).toBeLessThanOrEqual(acknowledged + 1);
    expect(keysOf(read)).toEqual(keysOf(snapshotOf(count)));
  }
});
