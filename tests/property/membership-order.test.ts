// Property: the membership rule reaches the same map whatever order entries arrive in.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { keys } from "../../src/cluster/keys.ts";
import { LamportClock } from "../../src/cluster/lamport.ts";
import { MetadataMap, toWire, type WireEntry } from "../../src/cluster/metadata-map.ts";
import { isMarsError } from "../../src/lib/errors.ts";
import { propertyParameters } from "../support/property.ts";

const hostNames = ["h0", "h1", "h2"];
const resources = ["r1", "r2"];

type Operation =
  | { kind: "join" | "leave"; host: number; resource: number }
  | { kind: "remove"; host: number; other: number; resource: number }
  | { kind: "write"; host: number; resource: number; target: number; value: number }
  | { kind: "intrude"; resource: number; value: number }
  | { kind: "catch-up"; host: number };

const host = fc.nat(hostNames.length - 1);
const resource = fc.nat(resources.length - 1);
const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constantFrom("join" as const, "leave" as const), host, resource }),
  fc.record({ kind: fc.constant("remove" as const), host, other: host, resource }),
  fc.record({ kind: fc.constant("write" as const), host, resource, target: fc.nat(3),
    value: fc.nat(9) }),
  fc.record({ kind: fc.constant("intrude" as const), resource, value: fc.nat(9) }),
  fc.record({ kind: fc.constant("catch-up" as const), host }),
);

/** The global keys a member may write (a size, a primary, a switch of some host). */
function targetKey(resourceName: string, target: number): string {
  if (target === 0) return keys.size(resourceName);
  if (target === 1) return keys.primary(resourceName);
  return keys.todo(resourceName, hostNames[target - 2]!, "sync");
}

function liveView(map: MetadataMap): string {
  return map.list("").map((entry) =>
    `${entry.key}=${JSON.stringify(entry.value)}@${entry.stamp.time}/${entry.stamp.host}`)
    .join("\n");
}

/** Runs the operations on hosts whose views lag (they catch up only when told). */
function produce(operations: readonly Operation[]): WireEntry[] {
  let wallMs = 1_000;
  const maps = hostNames.map((name) => new MetadataMap(name, new LamportClock(() => wallMs)));
  const produced: WireEntry[] = [];
  const seen = maps.map(() => 0);
  const honestly = (map: MetadataMap, write: () => unknown) => {
    try {
      write();
    } catch (error) {
      if (!isMarsError(error) || error.code !== "refused") throw error;
    }
    for (const entry of map.all()) {
      if (entry.stamp.host === map.host && !produced.some((known) => known.key === entry.key &&
        known.time === entry.stamp.time)) produced.push(toWire(entry));
    }
  };
  for (const op of operations) {
    wallMs += 1;
    const map = "host" in op ? maps[op.host]! : undefined;
    const name = "resource" in op ? resources[op.resource]! : "";
    if (op.kind === "join") {
      honestly(map!, () => map!.set(keys.resourceMember(name, map!.host), { disk: "/d" }));
    } else if (op.kind === "leave") {
      honestly(map!, () => map!.delete(keys.resourceMember(name, map!.host)));
    } else if (op.kind === "remove") {
      honestly(map!, () => map!.delete(keys.resourceMember(name, hostNames[op.other]!)));
    } else if (op.kind === "write") {
      honestly(map!, () => map!.set(targetKey(name, op.target), op.value));
    } else if (op.kind === "intrude") {
      produced.push({ key: targetKey(name, 1), value: `mallory-${op.value}`, time: wallMs + 5,
        host: "mallory", seq: 0 });
    } else {
      for (const entry of produced.slice(seen[op.host])) map!.apply(entry);
      seen[op.host] = produced.length;
    }
  }
  return produced;
}

test("the membership rule is order-independent for honest hosts; intruders never get in", () => {
  const scenario = fc.array(operation, { maxLength: 60 }).chain((operations) => {
    const count = produce(operations).length;
    return fc.record({
      operations: fc.constant(operations),
      order: fc.shuffledSubarray([...Array(count).keys()], { minLength: count, maxLength: count }),
      duplicates: fc.array(fc.nat(Math.max(count - 1, 0)), { maxLength: count > 0 ? 10 : 0 }),
    });
  });
  fc.assert(fc.property(scenario, ({ operations, order, duplicates }) => {
    const entries = produce(operations);
    const reference = new MetadataMap("observer", new LamportClock(() => 0));
    for (const entry of entries) reference.apply(entry);
    const shuffled = new MetadataMap("observer", new LamportClock(() => 0));
    for (const index of [...order, ...duplicates]) shuffled.apply(entries[index]!);
    expect(liveView(shuffled)).toBe(liveView(reference));
    for (const entry of reference.list("resource/")) expect(entry.stamp.host).not.toBe("mallory");
  }), propertyParameters("membership order", 300));
});
