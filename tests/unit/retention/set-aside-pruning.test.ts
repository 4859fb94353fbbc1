// deleted/ is pruned: oldest first when the home is short of space, after the keep period else.
import { expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { systemFiles } from "../../../src/platform/files.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import { systemLocks } from "../../../src/platform/lock.ts";
import {
  setAsideCheckIntervalMs, SetAsidePruning,
} from "../../../src/retention/set-aside-pruning.ts";
import { Home } from "../../../src/store/home.ts";
import { temporaryDirectory } from "../../support/binary.ts";

const storage = { files: systemFiles, io: openIoEngine("portable").engine };
const dayMs = 24 * 60 * 60 * 1000;

test("set-aside directories go after the keep period, or oldest first when space is short",
  async () => {
    const path = temporaryDirectory();
    const home = new Home(path, storage, systemLocks);
    await home.prepare();
    const startMs = Date.UTC(2026, 10, 1, 12, 0, 0, 123);
    for (const [resource, offsetMs] of [["r1", 0], ["r2", dayMs], ["r3", 2 * dayMs]] as const) {
      mkdirSync(join(path, "resources", resource, "nested"), { recursive: true });
      writeFileSync(join(path, "resources", resource, "nested", "log-000000001-a"), "x");
      await home.setAsideResource(resource, startMs + offsetMs);
    }
    mkdirSync(join(path, "deleted", "kept-by-hand")); // not ours: never listed or removed
    const entries = await home.setAsideEntries();
    expect(entries.map((entry) => entry.setAsideMs))
      .toEqual([startMs, startMs + dayMs, startMs + 2 * dayMs]);

    const removed: string[] = [];
    const pruning = new SetAsidePruning({
      entries: () => home.setAsideEntries(),
      remove: (entry) => home.removeSetAside(entry),
    }, 7 * dayMs, (_event, fields) => removed.push(String(fields.reason)));
    await pruning.prune("warn", startMs + 3 * dayMs, 0);
    expect(removed).toEqual([]);
    // Past r1's keep period, but checked again only after the interval.
    await pruning.prune("ok", startMs + 7 * dayMs + 1, 1);
    expect(removed).toEqual([]);
    await pruning.prune("ok", startMs + 7 * dayMs + 1, setAsideCheckIntervalMs);
    expect(removed).toEqual(["kept long enough"]);
    // Short of space: one more each pass, oldest first, whatever its age.
    await pruning.prune("trim", startMs + 7 * dayMs + 2, setAsideCheckIntervalMs + 1);
    expect(removed).toEqual(["kept long enough", "home short of space (trim)"]);
    const left = readdirSync(join(path, "deleted")).sort();
    expect(left.length).toBe(2);
    expect(left).toContain("kept-by-hand");
    expect(left.some((name) => name.startsWith("r3-"))).toBe(true);
    expect(existsSync(join(path, "resources"))).toBe(true);
  });
