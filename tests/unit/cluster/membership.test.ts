// The membership rule: only a resource's members write about it, whatever order gossip brings.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import {
  heldEntriesMax, MetadataMap, type WireEntry,
} from "../../../src/cluster/metadata-map.ts";
import { MetadataSync } from "../../../src/cluster/sync.ts";

function mapOf(host: string) {
  const map = new MetadataMap(host, new LamportClock(() => 1_000));
  const refused: { key: string; author: string; held: boolean }[] = [];
  map.onRefusal((entry, _reason, held) =>
    refused.push({ key: entry.key, author: entry.host, held }));
  return { map, refused };
}

const disk = { disk: "/dev/vdb" };
const wire = (key: string, host: string, time: number, value?: unknown): WireEntry =>
  value === undefined ? { key, host, time, seq: 0, deleted: true }
    : { key, host, time, seq: 0, value };

test("a global write from a host that is no member of the resource is held, not applied", () => {
  const { map, refused } = mapOf("alpha");
  expect(map.apply(wire(keys.primary("r1"), "mallory", 10, "mallory"))).toBe(false);
  expect(map.get(keys.primary("r1"))).toBeUndefined();
  expect(refused).toEqual([{ key: keys.primary("r1"), author: "mallory", held: true }]);
  expect(map.heldEntries().map((entry) => entry.key)).toEqual([keys.primary("r1")]);
  // Keys about no resource stay open to every member; another host's keys are never set.
  expect(map.apply(wire(keys.user("note"), "mallory", 11, 1))).toBe(true);
  expect(map.apply(wire(keys.actual("r1", "beta"), "mallory", 12, {}))).toBe(false);
  expect(refused.at(-1)).toEqual({
    key: keys.actual("r1", "beta"), author: "mallory", held: false,
  });
});

test("membership and a following write are accepted in either order (held, then released)", () => {
  const membership = wire(keys.resourceMember("r1", "beta"), "beta", 10, disk);
  const write = wire(keys.todo("r1", "alpha", "sync"), "beta", 11, false);
  for (const order of [[membership, write], [write, membership]]) {
    const { map } = mapOf("alpha");
    for (const entry of order) map.apply(entry);
    expect(map.get(keys.todo("r1", "alpha", "sync"))).toBe(false);
    expect(map.heldEntries()).toEqual([]);
  }
});

test("the rule judges the original author, not the host that relays the entry", () => {
  const { map } = mapOf("alpha");
  const sync = new MetadataSync(map, "incarnation-alpha", { tombstoneRetentionMs: 0 });
  const entries = [
    { ...wire(keys.resourceMember("r1", "beta"), "beta", 10, disk), seq: 1 },
    { ...wire(keys.primary("r1"), "beta", 11, "beta"), seq: 2 },
    { ...wire(keys.size("r1"), "carol", 12, 4096), seq: 3 },
  ];
  // carol relays beta's entries; carol itself is no member of r1.
  sync.receive("carol", {
    incarnation: "incarnation-carol", fromSeq: 0, throughSeq: 3, seqHigh: 3, time: 20, entries,
  });
  expect(map.get(keys.primary("r1"))).toBe("beta");
  expect(map.get(keys.size("r1"))).toBeUndefined();
});

test("a departed member's older writes count, its newer ones do not", () => {
  const { map } = mapOf("alpha");
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 10, disk));
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 20));
  expect(map.apply(wire(keys.primary("r1"), "beta", 15, "beta"))).toBe(true);
  expect(map.apply(wire(keys.size("r1"), "beta", 25, 4096))).toBe(false);
  expect(map.heldEntries().map((entry) => entry.key)).toEqual([keys.size("r1")]);
  // Joining again releases it: the rule looks at the membership as it is now.
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 30, disk));
  expect(map.get(keys.size("r1"))).toBe(4096);
});

test("a member may delete a dead host's keys; the removed host's writes still converge", () => {
  const { map } = mapOf("alpha");
  map.apply(wire(keys.resourceMember("r1", "carol"), "carol", 5, disk));
  map.apply(wire(keys.resourceMember("r1", "dave"), "dave", 6, disk));
  map.apply(wire(keys.actual("r1", "dave"), "dave", 7, { attached: true }));
  expect(map.apply(wire(keys.actual("r1", "dave"), "carol", 20))).toBe(true);
  expect(map.apply(wire(keys.resourceMember("r1", "dave"), "carol", 21))).toBe(true);
  expect(map.get(keys.resourceMember("r1", "dave"))).toBeUndefined();
  // A non-member may not remove anyone.
  expect(map.apply(wire(keys.resourceMember("r1", "carol"), "mallory", 22))).toBe(false);
  // dave, removed while cut off, may not have known: its write is taken (no host disagrees).
  expect(map.apply(wire(keys.todo("r1", "dave", "sync"), "dave", 23, false))).toBe(true);
});

test("this host writes about a resource only while it is a member", () => {
  const { map } = mapOf("alpha");
  expect(() => map.set(keys.primary("r1"), "alpha")).toThrow("not a member of r1");
  map.set(keys.resourceMember("r1", "alpha"), disk);
  map.set(keys.primary("r1"), "alpha");
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 5, disk));
  map.apply(wire(keys.actual("r1", "beta"), "beta", 6, {}));
  expect(() => map.set(keys.actual("r1", "beta"), {})).toThrow("owned by beta");
  map.delete(keys.actual("r1", "beta"));
  map.delete(keys.resourceMember("r1", "alpha"));
  expect(() => map.delete(keys.primary("r1"))).toThrow("not a member of r1");
});

test("held entries survive a restart of the map", () => {
  const { map } = mapOf("alpha");
  map.apply(wire(keys.primary("r1"), "beta", 10, "beta"));
  const restored = mapOf("alpha").map;
  restored.restore([...map.all()].map((entry) => ({ ...entry, ...entry.stamp })), map.seqHigh,
    map.heldEntries());
  restored.apply(wire(keys.resourceMember("r1", "beta"), "beta", 9, disk));
  expect(restored.get(keys.primary("r1"))).toBe("beta");
});

test("membership tombstones stay while their resource exists, then may be purged", () => {
  const { map } = mapOf("alpha");
  const sync = new MetadataSync(map, "incarnation-alpha", { tombstoneRetentionMs: 0 });
  map.set(keys.resourceMember("r1", "alpha"), disk);
  map.set(keys.size("r1"), 4096);
  map.set(keys.member("alpha"), { address: "a:1" });
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 10, disk));
  map.apply(wire(keys.resourceMember("r1", "beta"), "beta", 11));
  expect(sync.holdsTombstones()).toBe(false);
  expect(sync.purgeTombstones()).toBe(0);
  map.delete(keys.size("r1"));
  expect(sync.holdsTombstones()).toBe(true);
  expect(sync.purgeTombstones()).toBe(2);
  expect(map.entry(keys.resourceMember("r1", "beta"))).toBeUndefined();
});

test("held entries are bounded: the oldest is dropped, and said so", () => {
  const { map, refused } = mapOf("alpha");
  for (let index = 0; index <= heldEntriesMax; index++) {
    map.apply(wire(keys.size(`r${index}`), "mallory", 10 + index, 1));
  }
  expect(map.heldEntries().length).toBe(heldEntriesMax);
  expect(map.heldEntries()[0]!.key).toBe(keys.size("r1"));
  expect(refused.at(-2)).toEqual({ key: keys.size("r0"), author: "mallory", held: false });
  // A newer entry applied for a held key supersedes the held one.
  map.apply(wire(keys.resourceMember("r5", "beta"), "beta", 1, disk));
  map.apply(wire(keys.size("r5"), "beta", 1_000_000, 2));
  expect(map.heldEntries().some((entry) => entry.key === keys.size("r5"))).toBe(false);
});

test("a prefix lookup finds exactly the live keys under it, indexed or not", () => {
  const { map } = mapOf("alpha");
  map.set(keys.resourceMember("r1", "alpha"), disk);
  map.set(keys.resourceMember("r10", "alpha"), disk);
  map.set(keys.size("r1"), 1);
  map.set(keys.size("r10"), 2);
  map.set(keys.user("a/b"), 3);
  map.set(keys.member("alpha"), { address: "a:1" });
  const listed = (prefix: string) => map.list(prefix).map((entry) => entry.key);
  expect(listed("resource/r1/")).toEqual(["resource/r1/member/alpha", "resource/r1/size"]);
  expect(listed("resource/r1/member/")).toEqual(["resource/r1/member/alpha"]);
  expect(listed("resource/r1")).toHaveLength(4);
  expect(listed("resource/")).toHaveLength(4);
  expect(listed("user/a/")).toEqual(["user/a/b"]);
  expect(listed("member/")).toEqual(["member/alpha"]);
  expect(listed("")).toHaveLength(6);
  map.delete(keys.size("r10"));
  expect(listed("resource/r10/")).toEqual(["resource/r10/member/alpha"]);
});
