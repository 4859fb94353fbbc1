/** A simulated primary log server and a secondary's replica on one seeded clock and network. */
import { LamportClock } from "../../src/cluster/lamport.ts";
import { chainStartDigest } from "../../src/log/position.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import {
  directorySource, serveLogSession, type LogSource,
} from "../../src/replication/log-server.ts";
import { Replica } from "../../src/replication/replica.ts";
import { TailWatcher } from "../../src/replication/tail-watcher.ts";
import { acceptChannel } from "../../src/transport/channel.ts";
import { SimulatedClock } from "./simulated-clock.ts";
import { SimulatedStreamNetwork } from "./simulated-network.ts";
import { SimulatedStorage } from "./simulated-storage.ts";

/** Where the simulated primary serves its log. */
export const primaryAddress = { kind: "tcp" as const, host: "primary", port: 7777 };

/** Lets the simulation run `durationMs` in 5 ms steps, calling `tick` after each step. */
export async function runFor(clock: SimulatedClock, durationMs: number, tick: () => void) {
  for (let elapsed = 0; elapsed < durationMs; elapsed += 5) {
    clock.advance(5);
    for (let round = 0; round < 4; round++) await new Promise((done) => setImmediate(done));
    tick();
  }
}

/**
 * A clock, a network and a primary host that serves whatever `source()` returns over the
 * authenticated channel, as an engine's log server does.
 */
export async function logServerRig(seed: number) {
  const clock = new SimulatedClock();
  const random = seededRandom(seed);
  const network = new SimulatedStreamNetwork(clock);
  const secret = new Uint8Array(32).fill(seed % 251);
  const context = (host: string) => ({
    credentials: { cluster: "c1", host, secret }, random, clock,
    lamport: new LamportClock(() => clock.nowMs()),
  });
  const primaryStorage = new SimulatedStorage(seededRandom(seed + 1));
  await primaryStorage.files.makeDirectory("/p");
  let source: LogSource | undefined;
  const tail = new TailWatcher(clock);
  await network.view("primary").listen(primaryAddress, (connection) =>
    acceptChannel(connection, context("primary"), {
      admit: () => undefined, refused: () => {},
      opened: (session) => serveLogSession(session, {
        storage: primaryStorage, clock, tail, source: () => source, log: () => {},
      }),
    }));
  return {
    clock, network, context, primaryStorage,
    serve: (next: LogSource) => { source = next; },
  };
}

/**
 * The secondary's side of `rig`: a `deviceBytes` disk at /s/disk and a replica of r1 fetching
 * and replaying from the primary.
 */
export async function secondaryReplica(
  rig: Awaited<ReturnType<typeof logServerRig>>, storageSeed: number, deviceBytes: number,
) {
  const storage = new SimulatedStorage(seededRandom(storageSeed));
  await storage.files.makeDirectory("/s");
  const fd = await storage.files.open("/s/disk", { create: true });
  await storage.files.truncate(fd, deviceBytes);
  await storage.files.close(fd);
  const replica = await Replica.open({
    resource: "r1", disk: "/s/disk", directory: "/s/r1", storage, clock: rig.clock,
    network: rig.network.view("secondary"), context: rig.context("secondary"),
    log: () => {}, changed: () => {},
  });
  replica.configure({ fetch: true, replay: true }, { peer: "primary", address: primaryAddress });
  return { storage, replica };
}

/**
 * A primary writing its first logfile and a secondary replicating it onto a `deviceBytes` disk:
 * `write(index)` appends 4 KiB of `index + 1` and mirrors it into `model`.
 */
export async function replicaRig(seed: number, deviceBytes: number) {
  const rig = await logServerRig(seed);
  const { clock, primaryStorage } = rig;
  const writer = await LogWriter.start({
    storage: primaryStorage, clock, directory: "/p", resource: "r1", origin: "primary",
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  rig.serve(directorySource(primaryStorage, "/p", () => writer.durableEnd));
  const { storage, replica } = await secondaryReplica(rig, seed + 2, deviceBytes);
  const model = new Uint8Array(deviceBytes);
  const write = (index: number) => {
    const payload = new Uint8Array(4096).fill(index + 1);
    const offset = (index * 4096) % deviceBytes;
    writer.append({ kind: "write", deviceOffset: offset, lengthBytes: 4096, payload });
    model.set(payload, offset);
  };
  const run = (durationMs: number) => runFor(clock, durationMs, () => replica.maintain());
  return { ...rig, writer, storage, replica, model, write, run };
}
