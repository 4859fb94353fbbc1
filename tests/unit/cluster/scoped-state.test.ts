// A command that reads a few keys asks the engine for those prefixes only (tombstones included).
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import { parseControlRequest } from "../../../src/engine/control.ts";

test("entriesUnder returns one bucket's entries, tombstones too", () => {
  let now = 1000;
  const map = new MetadataMap("alpha", new LamportClock(() => now++));
  for (const resource of ["r1", "r2", "r10"]) {
    map.set(keys.resourceMember(resource, "alpha"), { disk: "/d" });
    map.set(keys.size(resource), 4096);
  }
  map.set("user/a", 1);
  map.set("user/b", 2);
  map.delete("user/b");
  expect(map.entriesUnder("resource/r1/").map((entry) => entry.key).sort())
    .toEqual(["resource/r1/member/alpha", "resource/r1/size"]);
  const user = map.entriesUnder("user/");
  expect(user.map((entry) => [entry.key, entry.value])).toEqual([["user/a", 1], ["user/b",
    undefined]]);
  expect(map.entriesUnder("user/a").map((entry) => entry.key)).toEqual(["user/a"]);
  expect(map.entriesUnder("").length).toBe(map.size);
});

test("a state request may name key prefixes, a short list of strings", () => {
  expect(parseControlRequest({ op: "state" })).toEqual({ op: "state" });
  expect(parseControlRequest({ op: "state", prefixes: ["user/x", "member/"] }))
    .toEqual({ op: "state", prefixes: ["user/x", "member/"] });
  expect(() => parseControlRequest({ op: "state", prefixes: [1] })).toThrow("prefixes");
  expect(() => parseControlRequest({ op: "state", prefixes: Array(65).fill("a") }))
    .toThrow("prefixes");
});
