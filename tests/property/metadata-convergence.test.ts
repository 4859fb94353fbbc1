// Property: the replicated metadata map converges on every member, whatever the network does.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { keys } from "../../src/cluster/keys.ts";
import { compareStamps, LamportClock, type Stamp } from "../../src/cluster/lamport.ts";
import { isMarsError } from "../../src/lib/errors.ts";
import { MetadataMap, type Entry } from "../../src/cluster/metadata-map.ts";
import { MetadataSync, type Batch } from "../../src/cluster/sync.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedMessageNetwork } from "../support/simulated-network.ts";

type Message =
  | { kind: "pull"; incarnation: string; afterSeq: number }
  | { kind: "batch"; batch: Batch };

const keyPool = [
  keys.user("a"), keys.user("b"), keys.primary("r1"), keys.size("r1"),
  keys.todo("r1", "h0", "sync"),
];
/** keyPool[firstResourceKey..] are about resource r1 (only its members may write them). */
const firstResourceKey = 2;

type Operation =
  | { kind: "set"; host: number; key: number; value: number }
  | { kind: "delete"; host: number; key: number }
  | { kind: "pull"; host: number; peer: number }
  | { kind: "deliver"; count: number }
  | { kind: "partition"; host: number }
  | { kind: "heal" }
  | { kind: "tick"; host: number; ms: number }
  | { kind: "purge"; host: number }
  | { kind: "purgeEverywhere" }
  | { kind: "join"; host: number }
  | { kind: "leave"; host: number }
  | { kind: "remove"; host: number; peer: number }
  | { kind: "intrude"; host: number; key: number; value: number };

const operation = (hostCount: number): fc.Arbitrary<Operation> => {
  const host = fc.nat(hostCount - 1);
  return fc.oneof(
    fc.record({ kind: fc.constant("set" as const), host, key: fc.nat(keyPool.length - 1),
      value: fc.nat(9) }),
    fc.record({ kind: fc.constant("delete" as const), host, key: fc.nat(keyPool.length - 1) }),
    fc.record({ kind: fc.constant("pull" as const), host, peer: fc.nat(hostCount - 1) }),
    fc.record({ kind: fc.constant("deliver" as const), count: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant("partition" as const), host }),
    fc.record({ kind: fc.constant("heal" as const) }),
    fc.record({ kind: fc.constant("tick" as const), host, ms: fc.nat(50) }),
    fc.record({ kind: fc.constant("purge" as const), host }),
    fc.record({ kind: fc.constant("purgeEverywhere" as const) }),
    fc.record({ kind: fc.constant("join" as const), host }),
    fc.record({ kind: fc.constant("leave" as const), host }),
    fc.record({ kind: fc.constant("remove" as const), host, peer: fc.nat(hostCount - 1) }),
    fc.record({ kind: fc.constant("intrude" as const), host,
      key: fc.integer({ min: firstResourceKey, max: keyPool.length - 1 }), value: fc.nat(9) }),
  );
};

interface Host {
  readonly name: string;
  readonly map: MetadataMap;
  readonly sync: MetadataSync;
  wallMs: number;
}

function buildCluster(hostCount: number, seed: number, loss: number, duplicate: number) {
  const network = new SimulatedMessageNetwork<Message>(seededRandom(seed), {
    lossProbability: loss, duplicateProbability: duplicate,
  });
  const hosts: Host[] = [];
  for (let index = 0; index < hostCount; index++) {
    const name = `h${index}`;
    const host = { name, wallMs: 1_000 + index * 7 } as Host;
    const clock = new LamportClock(() => host.wallMs);
    Object.assign(host, { map: new MetadataMap(name, clock) });
    Object.assign(host, { sync: new MetadataSync(host.map, `incarnation-${name}`, {
      tombstoneRetentionMs: 0,
    }) });
    hosts.push(host);
    network.register(name, (from, message) => {
      if (message.kind === "pull") {
        const batch = host.sync.batchAfter(message.afterSeq, message.incarnation);
        network.send(name, from, { kind: "batch", batch });
      } else {
        host.sync.receive(from, message.batch);
      }
    });
  }
  // Everyone starts knowing the whole membership, as after join-cluster, and is in r1.
  for (const host of hosts) {
    host.map.set(keys.member(host.name), { address: host.name });
    host.map.set(keys.resourceMember("r1", host.name), { disk: "/d" });
  }
  for (const host of hosts) {
    for (const other of hosts) {
      for (const key of [keys.member(other.name), keys.resourceMember("r1", other.name)]) {
        const entry = other.map.entry(key)!;
        if (other !== host) host.map.apply({ ...entry, time: entry.stamp.time, host: other.name });
      }
    }
  }
  return { network, hosts };
}

/** An honest host's write: its own map refuses what the membership rule forbids. */
function honestly(write: () => Entry | undefined): Entry | undefined {
  try {
    return write();
  } catch (error) {
    if (isMarsError(error) && error.code === "refused") return undefined;
    throw error;
  }
}

function pull(network: SimulatedMessageNetwork<Message>, host: Host, peer: Host): void {
  if (host === peer) return;
  const { incarnation, afterSeq } = host.sync.pullFrom(peer.name);
  network.send(host.name, peer.name, { kind: "pull", incarnation, afterSeq });
}

function syncRounds(network: SimulatedMessageNetwork<Message>, hosts: Host[], rounds: number) {
  for (let round = 0; round < rounds; round++) {
    for (const host of hosts) for (const peer of hosts) pull(network, host, peer);
    network.deliverAll();
  }
}

function liveView(map: MetadataMap): string {
  const view: string[] = [];
  for (const entry of map.list("")) {
    const stamp = `${entry.stamp.time}/${entry.stamp.host}`;
    view.push(`${entry.key}=${JSON.stringify(entry.value)}@${stamp}`);
  }
  return view.join("\n");
}

test("metadata converges under reordering, duplication, loss and healed partitions", () => {
  const scenario = fc.integer({ min: 2, max: 4 }).chain((hostCount) => fc.record({
    hostCount: fc.constant(hostCount),
    seed: fc.integer(),
    loss: fc.double({ min: 0, max: 0.4, noNaN: true }),
    duplicate: fc.double({ min: 0, max: 0.3, noNaN: true }),
    operations: fc.array(operation(hostCount), { maxLength: 120 }),
  }));
  fc.assert(fc.property(scenario, ({ hostCount, seed, loss, duplicate, operations }) => {
    const { network, hosts } = buildCluster(hostCount, seed, loss, duplicate);
    const newest = new Map<string, { stamp: Stamp; value: unknown }>();
    const remember = (entry: Entry | undefined) => {
      if (!entry) return;
      const known = newest.get(entry.key);
      if (!known || compareStamps(entry.stamp, known.stamp) > 0) {
        newest.set(entry.key, { stamp: entry.stamp, value: entry.value });
      }
    };
    const intruded: string[] = [];
    for (const op of operations) {
      const map = "host" in op ? hosts[op.host]!.map : undefined;
      if (op.kind === "set") {
        remember(honestly(() => map!.set(keyPool[op.key]!, op.value)));
      } else if (op.kind === "delete") {
        remember(honestly(() => map!.delete(keyPool[op.key]!)));
      } else if (op.kind === "join") {
        remember(map!.set(keys.resourceMember("r1", map!.host), { disk: "/d" }));
      } else if (op.kind === "leave") {
        remember(map!.delete(keys.resourceMember("r1", map!.host)));
      } else if (op.kind === "remove") {
        remember(honestly(() => map!.delete(keys.resourceMember("r1", `h${op.peer}`))));
      } else if (op.kind === "intrude") {
        // A cluster member that is no member of r1 (and never becomes one) sends a crafted entry.
        const time = map!.clock.time + 1 + op.value;
        map!.apply({ key: keyPool[op.key]!, value: 100 + op.value, time, host: "mallory", seq: 0 });
        intruded.push(keyPool[op.key]!);
      } else if (op.kind === "pull") {
        pull(network, hosts[op.host]!, hosts[op.peer]!);
      } else if (op.kind === "deliver") {
        for (let count = 0; count < op.count; count++) network.deliverOne();
      } else if (op.kind === "partition") {
        network.isolate([`h${op.host}`], hosts.map((host) => host.name));
      } else if (op.kind === "heal") {
        network.heal();
      } else if (op.kind === "tick") {
        hosts[op.host]!.wallMs += op.ms;
      } else {
        for (const host of op.kind === "purge" ? [hosts[op.host]!] : hosts) {
          if (host.sync.holdsTombstones()) host.sync.publishCaughtUp();
          host.sync.purgeTombstones();
        }
      }
    }
    // Liveness phase: the network heals and stops losing messages.
    network.heal();
    network.faults = { lossProbability: 0, duplicateProbability: duplicate };
    network.deliverAll();
    for (let phase = 0; phase < 3; phase++) {
      syncRounds(network, hosts, hostCount + 1);
      for (const host of hosts) if (host.sync.holdsTombstones()) host.sync.publishCaughtUp();
      syncRounds(network, hosts, hostCount + 1);
      for (const host of hosts) host.sync.purgeTombstones();
    }
    syncRounds(network, hosts, hostCount + 1);
    const views = hosts.map((host) => liveView(host.map));
    for (const view of views) expect(view).toBe(views[0]!);
    for (const [key, expected] of newest) {
      expect(hosts[0]!.map.get(key)).toEqual(expected.value);
    }
    for (const host of hosts) expect(host.sync.holdsTombstones()).toBe(false);
    for (const key of intruded) {
      for (const host of hosts) expect(host.map.entry(key)?.stamp.host).not.toBe("mallory");
    }
  }), propertyParameters("metadata convergence", 300));
});
