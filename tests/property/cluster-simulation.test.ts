// Seeded simulation of real engines' cluster nodes: partitions, crashes and restarts, then healing.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { keys } from "../../src/cluster/keys.ts";
import { compareStamps, LamportClock, type Stamp } from "../../src/cluster/lamport.ts";
import { MetadataMap, toWire } from "../../src/cluster/metadata-map.ts";
import { ClusterNode, defaultTiming, type ClusterTiming } from "../../src/engine/cluster-node.ts";
import type { Logger } from "../../src/engine/logger.ts";
import { seededRandom } from "../../src/platform/random.ts";
import type { FileLocks } from "../../src/platform/types.ts";
import { Home, homeFormat } from "../../src/store/home.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../support/simulated-network.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const hostNames = ["alpha", "beta", "gamma"];
const keyPool = [keys.user("a"), keys.user("b"), keys.primary("r1"), keys.size("r1")];
const secret = new Uint8Array(32).fill(3);
const timing: ClusterTiming = {
  ...defaultTiming, tombstoneRetentionMs: 0, reconnectDelayMaxMs: 2_000,
};
const stepMs = 5;

const noLocks: FileLocks = { tryLock: async () => ({ release: async () => {} }) };

interface SimulatedHost {
  readonly name: string;
  readonly port: number;
  storage: SimulatedStorage;
  node: ClusterNode | undefined;
}

type Operation =
  | { kind: "set"; host: number; key: number; value: number }
  | { kind: "delete"; host: number; key: number }
  | { kind: "partition"; left: number; right: number }
  | { kind: "heal" }
  | { kind: "crash"; host: number }
  | { kind: "restart"; host: number }
  | { kind: "advance"; ms: number };

const host = fc.nat(hostNames.length - 1);
const operation: fc.Arbitrary<Operation> = fc.oneof(
  fc.record({ kind: fc.constant("set" as const), host, key: fc.nat(keyPool.length - 1),
    value: fc.nat(99) }),
  fc.record({ kind: fc.constant("delete" as const), host, key: fc.nat(keyPool.length - 1) }),
  fc.record({ kind: fc.constant("partition" as const), left: host, right: host }),
  fc.record({ kind: fc.constant("heal" as const) }),
  fc.record({ kind: fc.constant("crash" as const), host }),
  fc.record({ kind: fc.constant("restart" as const), host }),
  fc.record({ kind: fc.constant("advance" as const), ms: fc.integer({ min: 1, max: 3_000 }) }),
);

class Simulation {
  readonly clock = new SimulatedClock();
  readonly network = new SimulatedStreamNetwork(this.clock);
  readonly hosts: SimulatedHost[];
  readonly errors: string[] = [];
  readonly logger: Logger = {
    log: (level, event, fields) => {
      if (level === "error") this.errors.push(`${event} ${JSON.stringify(fields)}`);
    },
  };

  constructor(readonly seed: number) {
    this.hosts = hostNames.map((name, index) => ({
      name, port: 7000 + index, storage: new SimulatedStorage(seededRandom(seed + index)),
      node: undefined,
    }));
  }

  home(simulated: SimulatedHost): Home {
    return new Home(`/${simulated.name}`, simulated.storage, noLocks);
  }

  /** Every host starts knowing every member, as after create-cluster and join-cluster. */
  async install(): Promise<void> {
    const map = new MetadataMap("alpha", new LamportClock(() => this.clock.nowMs()));
    for (const simulated of this.hosts) {
      map.set(keys.member(simulated.name), { address: `10.0.0.1:${simulated.port}` });
    }
    // Every host is a member of r1 (written by itself: only the owner writes its membership).
    const memberships = this.hosts.map((simulated, index) => ({
      key: keys.resourceMember("r1", simulated.name), value: { disk: "/d" },
      time: map.clock.time + 1 + index, host: simulated.name, seq: 0,
    }));
    for (const entry of memberships) map.apply(entry);
    for (const simulated of this.hosts) {
      const home = this.home(simulated);
      await home.prepare();
      await home.writeSecret("cluster", secret);
      await home.writeMetadata({
        format: homeFormat, lamportTime: map.clock.time, seqHigh: map.seqHigh,
        entries: [...map.all()].map(toWire), peers: {},
      });
      await home.writeIdentity({
        format: homeFormat, cluster: "cluster", host: simulated.name,
        listen: `10.0.0.1:${simulated.port}`, incarnation: `${simulated.name}-${this.seed}`,
        createdMs: 0,
      });
    }
  }

  async start(simulated: SimulatedHost): Promise<void> {
    const home = this.home(simulated);
    const node = new ClusterNode(await home.readIdentity(), secret, home, {
      clock: this.clock, random: seededRandom(this.seed ^ simulated.port),
      network: this.network.view(simulated.name),
    }, this.logger, timing);
    await node.load();
    await node.start();
    simulated.node = node;
  }

  crash(simulated: SimulatedHost): void {
    const node = simulated.node!;
    simulated.storage = simulated.storage.crash();
    this.network.crash(simulated.name);
    simulated.node = undefined;
    void node.stop();
  }

  async settle(): Promise<void> {
    for (let round = 0; round < 4; round++) await new Promise((resolve) => setImmediate(resolve));
  }

  async advance(durationMs: number): Promise<void> {
    for (let elapsed = 0; elapsed < durationMs; elapsed += stepMs) {
      this.clock.advance(stepMs);
      await this.settle();
    }
  }
}

function liveView(map: MetadataMap): string {
  return map.list("").filter((entry) => !entry.key.startsWith("host/"))
    .map((entry) => `${entry.key}=${JSON.stringify(entry.value)}@${entry.stamp.time}`).join("\n");
}

test("engines' metadata converges after partitions, crashes and restarts heal", async () => {
  const scenario = fc.record({
    seed: fc.integer({ min: 1, max: 1_000_000 }),
    operations: fc.array(operation, { maxLength: 25 }),
  });
  await fc.assert(fc.asyncProperty(scenario, async ({ seed, operations }) => {
    const simulation = new Simulation(seed);
    await simulation.install();
    for (const simulated of simulation.hosts) await simulation.start(simulated);
    const newest = new Map<string, { stamp: Stamp; value: unknown }>();
    const remember = (key: string, stamp: Stamp, value: unknown) => {
      const known = newest.get(key);
      if (!known || compareStamps(stamp, known.stamp) > 0) newest.set(key, { stamp, value });
    };
    for (const op of operations) {
      const target = "host" in op ? simulation.hosts[op.host]! : undefined;
      if (op.kind === "set" && target?.node) {
        const entry = target.node.map.set(keyPool[op.key]!, op.value);
        await target.node.flush();
        remember(entry.key, entry.stamp, entry.value);
      } else if (op.kind === "delete" && target?.node) {
        const entry = target.node.map.delete(keyPool[op.key]!);
        await target.node.flush();
        if (entry) remember(entry.key, entry.stamp, undefined);
      } else if (op.kind === "partition" && op.left !== op.right) {
        simulation.network.partition(hostNames[op.left]!, hostNames[op.right]!);
      } else if (op.kind === "heal") {
        simulation.network.heal();
      } else if (op.kind === "crash" && target?.node) {
        simulation.crash(target);
      } else if (op.kind === "restart" && target && !target.node) {
        await simulation.start(target);
      } else if (op.kind === "advance") {
        await simulation.advance(op.ms);
      }
    }
    simulation.network.heal();
    for (const simulated of simulation.hosts) {
      if (!simulated.node) await simulation.start(simulated);
    }
    await simulation.advance(20_000);
    const nodes = simulation.hosts.map((simulated) => simulated.node!);
    const views = nodes.map((node) => liveView(node.map));
    for (const view of views) expect(view).toBe(views[0]!);
    for (const [key, expected] of newest) expect(nodes[0]!.map.get(key)).toEqual(expected.value);
    for (const node of nodes) expect(node.sync.holdsTombstones()).toBe(false);
    for (const node of nodes) {
      for (const peer of hostNames) if (peer !== node.identity.host) {
        expect(node.isAlive(peer)).toBe(true);
      }
    }
    expect(simulation.errors).toEqual([]);
    for (const node of nodes) await node.stop();
  }), propertyParameters("cluster simulation", 8));
}, 120_000);
