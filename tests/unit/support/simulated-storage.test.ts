// The simulated disk keeps exactly what a crash may keep: synced data and synced names.
import { describe, expect, test } from "bun:test";
import { seededRandom } from "../../../src/platform/random.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

async function writeFile(
  storage: SimulatedStorage, path: string, bytes: Uint8Array, sync: boolean,
) {
  const fd = await storage.files.open(path, { create: true });
  const operations = [{ kind: "write" as const, fd, offset: 0, buffer: bytes }];
  await storage.io.submit(sync ? [...operations, { kind: "fsync", fd, dataOnly: true }]
    : operations, { ordered: true });
  await storage.files.close(fd);
}

describe("simulated storage", () => {
  test("synced data and synced directory entries survive any crash", async () => {
    for (let seed = 0; seed < 50; seed++) {
      let storage = new SimulatedStorage(seededRandom(seed));
      await storage.files.makeDirectory("/d");
      await writeFile(storage, "/d/a", new Uint8Array(2048).fill(1), true);
      await storage.files.syncDirectory("/d");
      await writeFile(storage, "/d/a", new Uint8Array(1024).fill(2), false);
      storage = storage.crash();
      const content = storage.contentOf("/d/a");
      expect(content.length).toBe(2048);
      // Each 512-byte sector of the unsynced overwrite is either old or new, never mixed.
      for (let sector = 0; sector < 4; sector++) {
        const slice = content.subarray(sector * 512, sector * 512 + 512);
        expect(slice.every((byte) => byte === slice[0])).toBe(true);
        if (sector >= 2) expect(slice[0]).toBe(1);
      }
    }
  });

  test("a creation or rename without syncDirectory may be lost; some seed loses it", async () => {
    const outcomes = new Set<string>();
    for (let seed = 0; seed < 40; seed++) {
      let storage = new SimulatedStorage(seededRandom(seed));
      await storage.files.makeDirectory("/d");
      await writeFile(storage, "/d/tmp", new Uint8Array([7]), true);
      await storage.files.rename("/d/tmp", "/d/final");
      storage = storage.crash();
      outcomes.add((await storage.files.list("/d")).join(","));
    }
    expect([...outcomes].sort()).toEqual(["", "final", "tmp"]);
  });

  test("calls on the crashed machine never complete", async () => {
    const storage = new SimulatedStorage(seededRandom(1));
    await storage.files.makeDirectory("/d");
    storage.crash();
    let settled = false;
    storage.files.list("/d").then(() => { settled = true; }, () => { settled = true; });
    await new Promise((resolve) => setImmediate(resolve));
    expect(settled).toBe(false);
  });
});
