// Log lifetime decisions: deletion once every holder replayed, dropping laggards, space levels.
import { describe, expect, test } from "bun:test";
import fc from "fast-check";
import {
  decideRetention, holdingPosition, lagOf, trimmable, type LogfileFact,
} from "../../../src/retention/policy.ts";
import {
  chooseEmergency, defaultSpaceThresholds, levelRank, spaceLevel, spaceLevels, type SpaceLevel,
} from "../../../src/retention/space.ts";
import { propertyParameters } from "../../support/property.ts";

const hour = 3600_000;
const files: LogfileFact[] = [
  { sequence: 1, lengthBytes: 1000, createdMs: 0 },
  { sequence: 2, lengthBytes: 1000, createdMs: hour },
  { sequence: 3, lengthBytes: 500, createdMs: 2 * hour },
];
const at = (sequence: number, offsetBytes: number) => ({ sequence, offsetBytes });

describe("retention", () => {
  test("a logfile goes once every holding member is past it; the newest never", () => {
    const members = [
      { host: "a", position: at(3, 500) }, { host: "b", position: at(2, 1000) },
    ];
    expect(decideRetention(files, members, 3 * hour).deletable).toEqual([1]);
    const ahead = [{ host: "a", position: at(3, 500) }, { host: "b", position: at(3, 256) }];
    expect(decideRetention(files, ahead, 3 * hour).deletable).toEqual([1, 2]);
    const behind = [...members, { host: "c", position: at(2, 10) }];
    expect(decideRetention(files, behind, 3 * hour).deletable).toEqual([1]);
    expect(decideRetention(files, [], 3 * hour).deletable).toEqual([1, 2]);
  });

  test("a member lagging beyond the byte or age limit is dropped and holds nothing", () => {
    const members = [{ host: "a", position: at(3, 500) }, { host: "dead", position: at(1, 0) }];
    const bytes = decideRetention(files, members, 3 * hour,
      { lagBytesMax: 2000, lagAgeMsMax: 100 * hour });
    expect(bytes.dropped.map((item) => item.host)).toEqual(["dead"]);
    expect(bytes.deletable).toEqual([1, 2]);
    const age = decideRetention(files, members, 3 * hour,
      { lagBytesMax: 1e12, lagAgeMsMax: 2 * hour });
    expect(age.dropped.map((item) => item.host)).toEqual(["dead"]);
    const kept = decideRetention(files, members, 3 * hour,
      { lagBytesMax: 1e12, lagAgeMsMax: 4 * hour });
    expect(kept.dropped).toEqual([]);
    expect(kept.deletable).toEqual([]);
  });

  test("lag counts the bytes from the position to the end", () => {
    expect(lagOf(at(2, 400), files)).toEqual({ lagBytes: 1100, oldestNeededMs: hour });
    expect(lagOf(at(3, 500), files).lagBytes).toBe(0);
  });

  test("trimming keeps what this host's own replay still needs", () => {
    expect(trimmable(files, at(2, 999))).toEqual([1]);
    expect(trimmable(files, at(2, 1000))).toEqual([1]); // at its end: the next one is not here
    expect(trimmable(files, at(3, 0))).toEqual([1, 2]);
    expect(trimmable(files, undefined)).toEqual([]);
  });

  test("a member holds from the lowest of its positions (replay, sync catch-up start)", () => {
    expect(holdingPosition(at(3, 0), at(2, 5), undefined)).toEqual(at(2, 5));
    expect(holdingPosition(undefined)).toBeUndefined();
  });

  test("property: nothing a holder still needs is ever deletable", () => {
    const position = fc.record({
      sequence: fc.integer({ min: 1, max: 8 }), offsetBytes: fc.integer({ min: 0, max: 1200 }),
    });
    fc.assert(fc.property(
      fc.array(fc.integer({ min: 1, max: 1200 }), { minLength: 1, maxLength: 8 }),
      fc.array(fc.option(position, { nil: undefined }), { maxLength: 5 }),
      (lengths, positions) => {
        const logfiles = lengths.map((lengthBytes, index) =>
          ({ sequence: index + 1, lengthBytes, createdMs: index }));
        const members = positions.map((item, index) => ({ host: `h${index}`, position: item }));
        const decision = decideRetention(logfiles, members, 10);
        expect(decision.dropped).toEqual([]);
        for (const sequence of decision.deletable) {
          expect(sequence).toBeLessThan(logfiles.length);
          for (const item of positions) {
            if (item) expect(item.sequence).toBeGreaterThanOrEqual(sequence);
            if (item) expect(item.sequence).toBeGreaterThan(sequence);
          }
        }
      },
    ), propertyParameters("retention keeps what is needed", 300));
  });
});

describe("space levels", () => {
  const total = 1000;
  test("levels escalate as free space falls", () => {
    const seen = [500, 150, 80, 40, 10].map((free) => spaceLevel(free, total, "ok"));
    expect(seen).toEqual(["ok", "warn", "trim", "stop-fetch", "emergency"]);
  });

  test("a level is left only past its floor plus the hysteresis", () => {
    expect(spaceLevel(25, total, "emergency")).toBe("emergency");
    expect(spaceLevel(35, total, "emergency")).toBe("stop-fetch");
    expect(spaceLevel(205, total, "warn")).toBe("warn");
    expect(spaceLevel(215, total, "warn")).toBe("ok");
  });

  test("property: never below the level the free space alone reaches", () => {
    fc.assert(fc.property(
      fc.integer({ min: 0, max: total }), fc.constantFrom(...spaceLevels),
      (free, previous: SpaceLevel) => {
        const level = spaceLevel(free, total, previous);
        expect(levelRank(level)).toBeGreaterThanOrEqual(levelRank(spaceLevel(free, total, "ok")));
        expect(levelRank(level)).toBeLessThanOrEqual(
          Math.max(levelRank(previous), levelRank(spaceLevel(free, total, "ok"))));
      },
    ), propertyParameters("space level hysteresis", 500));
  });

  test("emergency takes the largest backlogs until enough would be freed", () => {
    const backlogs = [
      { resource: "small", backlogBytes: 5 }, { resource: "big", backlogBytes: 40 },
      { resource: "mid", backlogBytes: 20 }, { resource: "idle", backlogBytes: 0 },
    ];
    expect(chooseEmergency(backlogs, 10, total, defaultSpaceThresholds)).toEqual(["big"]);
    expect(chooseEmergency(backlogs, 0, total)).toEqual(["big"]);
    expect(chooseEmergency(backlogs, 0, 3000)).toEqual(["big", "mid", "small"]);
    expect(chooseEmergency([{ resource: "idle", backlogBytes: 0 }], 0, total)).toEqual([]);
  });
});
