// Seeded simulation of fetch + replay with disconnects and secondary crashes: always a prefix.
import { expect, test } from "bun:test";
import fc from "fast-check";
import { LamportClock } from "../../src/cluster/lamport.ts";
import { chainStartDigest, comparePositions, type LogPosition } from "../../src/log/position.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import type { Random } from "../../src/platform/types.ts";
import { directorySource, serveLogSession } from "../../src/replication/log-server.ts";
import { Replica } from "../../src/replication/replica.ts";
import { TailWatcher } from "../../src/replication/tail-watcher.ts";
import { acceptChannel, type ChannelContext } from "../../src/transport/channel.ts";
import { propertyParameters } from "../support/property.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../support/simulated-network.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const deviceBytes = 64 * 1024;
const stepMs = 5;
const secret = new Uint8Array(32).fill(9);
const primaryAddress = { kind: "tcp" as const, host: "primary", port: 7777 };

type Operation =
  | { kind: "write"; offset: number; lengthBytes: number; fill: number }
  | { kind: "flush" }
  | { kind: "advance"; ms: number }
  | { kind: "partition" }
  | { kind: "heal" }
  | { kind: "crash" };

const operation: fc.Arbitrary<Operation> = fc.oneof(
  { weight: 6, arbitrary: fc.record({
    kind: fc.constant("write" as const), offset: fc.nat(deviceBytes - 1),
    lengthBytes: fc.integer({ min: 1, max: 3000 }), fill: fc.nat(255) }) },
  { weight: 2, arbitrary: fc.record({ kind: fc.constant("flush" as const) }) },
  { weight: 3, arbitrary: fc.record({ kind: fc.constant("advance" as const),
    ms: fc.integer({ min: 1, max: 400 }) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("partition" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("heal" as const) }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant("crash" as const) }) },
);

function context(host: string, clock: SimulatedClock, random: Random): ChannelContext {
  return {
    credentials: { cluster: "c1", host, secret }, random, clock,
    lamport: new LamportClock(() => clock.nowMs()),
  };
}

class Simulation {
  readonly clock = new SimulatedClock();
  readonly network = new SimulatedStreamNetwork(this.clock);
  readonly tail = new TailWatcher(this.clock);
  readonly random: Random;
  readonly primaryStorage: SimulatedStorage;
  secondaryStorage: SimulatedStorage;
  writer!: LogWriter;
  replica: Replica | undefined;
  /** Every appended write with the log position just after it, in log order. */
  readonly history: { end: LogPosition; offset: number; payload: Uint8Array }[] = [];
  /** After a crash, the disk may hold writes beyond the persisted position until replay ran. */
  recovering = false;
  checks = 0;

  constructor(seed: number) {
    this.random = seededRandom(seed);
    this.primaryStorage = new SimulatedStorage(seededRandom(seed + 1));
    this.secondaryStorage = new SimulatedStorage(seededRandom(seed + 2));
  }

  async start(): Promise<void> {
    await this.primaryStorage.files.makeDirectory("/primary");
    this.writer = await LogWriter.start({
      storage: this.primaryStorage, clock: this.clock, directory: "/primary", resource: "r1",
      origin: "primary", limits: { logfileBytesMax: 8_192, batchRecordsMax: 3 },
    }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
      stampFloor: 0 });
    const source = directorySource(this.primaryStorage, "/primary", () => this.writer.durableEnd);
    const serving = context("primary", this.clock, this.random);
    await this.network.view("primary").listen(primaryAddress, (connection) =>
      acceptChannel(connection, serving, {
        admit: () => undefined, refused: () => {},
        opened: (session) => serveLogSession(session, {
          storage: this.primaryStorage, clock: this.clock, source: () => source, log: () => {},
          tail: this.tail,
        }),
      }));
    await this.secondaryStorage.files.makeDirectory("/secondary");
    const fd = await this.secondaryStorage.files.open("/secondary/disk", { create: true });
    await this.secondaryStorage.files.truncate(fd, deviceBytes);
    await this.secondaryStorage.io.submit([{ kind: "fsync", fd, dataOnly: false }]);
    await this.secondaryStorage.files.close(fd);
    await this.secondaryStorage.files.syncDirectory("/secondary");
    await this.openReplica();
  }

  async openReplica(): Promise<void> {
    this.replica = await Replica.open({
      resource: "r1", disk: "/secondary/disk", directory: "/secondary/r1",
      storage: this.secondaryStorage, clock: this.clock,
      network: this.network.view("secondary"),
      context: context("secondary", this.clock, this.random), log: () => {}, changed: () => {},
    });
    this.replica.configure({ fetch: true, replay: true },
      { peer: "primary", address: primaryAddress });
  }

  async settle(): Promise<void> {
    for (let round = 0; round < 6; round++) await new Promise((resolve) => setImmediate(resolve));
  }

  async advance(durationMs: number): Promise<void> {
    for (let elapsed = 0; elapsed < durationMs; elapsed += stepMs) {
      this.clock.advance(stepMs);
      await this.settle();
      this.check();
    }
  }

  /** The primary's device just after the last write that ends at or before `position`. */
  stateAt(position: LogPosition): Uint8Array {
    const disk = new Uint8Array(deviceBytes);
    for (const item of this.history) {
      if (comparePositions(item.end, position) > 0) break;
      disk.set(item.payload, item.offset);
    }
    return disk;
  }

  /** While replay rests, the secondary's disk is the primary's device at the replay position. */
  check(): void {
    const replayer = this.replica?.replayer;
    if (!replayer || replayer.busy) return;
    if (this.recovering) {
      if (replayer.state !== "caught-up") return;
      this.recovering = false;
    }
    const disk = this.secondaryStorage.contentOf("/secondary/disk");
    const expected = this.stateAt(replayer.position);
    this.checks++;
    expect(Buffer.from(disk).equals(Buffer.from(expected))).toBe(true);
  }

  async crashSecondary(): Promise<void> {
    this.network.crash("secondary");
    this.secondaryStorage = this.secondaryStorage.crash();
    this.replica = undefined;
    this.recovering = true;
    await this.openReplica();
  }
}

test("fetch + replay under disconnects and crashes: the secondary is always a prefix",
  async () => {
    await fc.assert(fc.asyncProperty(fc.array(operation, { minLength: 5, maxLength: 60 }),
      fc.nat(1_000_000), async (operations, seed) => {
        const simulation = new Simulation(seed);
        await simulation.start();
        for (const [index, step] of operations.entries()) {
          if (step.kind === "write") {
            const lengthBytes = Math.min(step.lengthBytes, deviceBytes - step.offset);
            const payload = new Uint8Array(lengthBytes).fill(step.fill ^ index);
            const appended = simulation.writer.append({
              kind: "write", deviceOffset: step.offset, lengthBytes, payload,
            });
            simulation.history.push({ end: appended.end, offset: step.offset, payload });
          } else if (step.kind === "flush") {
            await simulation.writer.flush();
          } else if (step.kind === "advance") {
            await simulation.advance(step.ms);
          } else if (step.kind === "partition") {
            simulation.network.partition("primary", "secondary");
          } else if (step.kind === "heal") {
            simulation.network.heal();
          } else {
            await simulation.crashSecondary();
          }
        }
        await simulation.writer.flush();
        simulation.network.heal();
        const end = simulation.writer.durableEnd;
        for (let waited = 0; waited < 60_000; waited += 500) {
          const position = simulation.replica!.replayer.position;
          if (comparePositions(position, end) >= 0 && !simulation.replica!.replayer.busy) break;
          await simulation.advance(500);
        }
        expect(simulation.replica!.replayer.position).toEqual(end);
        simulation.check();
        expect(simulation.checks).toBeGreaterThan(0);
        if (process.env.SIMULATION_DEBUG) console.log(JSON.stringify(end), simulation.checks);
      }), propertyParameters("replication simulation", 25));
  }, 300_000);
