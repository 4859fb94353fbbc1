// Every translog open starts a logfile: idle restarts leave empty ones, replicated and deleted.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { logfileHeaderBytes } from "../../../src/log/format.ts";
import type { LogPosition } from "../../../src/log/position.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { directorySource, serveLogSession } from "../../../src/replication/log-server.ts";
import { Replica } from "../../../src/replication/replica.ts";
import { TailWatcher } from "../../../src/replication/tail-watcher.ts";
import { decideRetention } from "../../../src/retention/policy.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { acceptChannel } from "../../../src/transport/channel.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../../support/simulated-network.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const deviceBytes = 64 * 1024;
const address = { kind: "tcp" as const, host: "primary", port: 7777 };
const secret = new Uint8Array(32).fill(8);
const idleRestarts = 3;

/** One engine run of the primary: opens the translog, writes `blocks` blocks, closes. */
async function primaryRun(storage: SimulatedStorage, clock: SimulatedClock, blocks: number[]) {
  const device = await openTranslog({
    storage, clock, directory: "/p/log", resource: "r1", host: "primary",
    backing: await openFileDevice(storage, "/p/disk", { createBytes: deviceBytes }),
  });
  for (const index of blocks) {
    await device.write(index * 4096, new Uint8Array(4096).fill(index + 1), { fua: true });
  }
  const position = device.writebackPosition;
  await device.close();
  return position;
}

test("idle restarts of a primary: empty logfiles, replicated and retained like any", async () => {
  const clock = new SimulatedClock();
  const primaryStorage = new SimulatedStorage(seededRandom(5));
  await primaryStorage.files.makeDirectory("/p");
  await primaryRun(primaryStorage, clock, [0, 1, 2]);
  const positions: LogPosition[] = [];
  for (let restart = 0; restart < idleRestarts; restart++) {
    positions.push(await primaryRun(primaryStorage, clock, []));
  }
  await primaryRun(primaryStorage, clock, [3, 1]);
  const logfiles = await listLogfiles(primaryStorage, "/p/log");
  const lengths = await Promise.all(logfiles.map(async (file) =>
    (await primaryStorage.files.status(file.path))!.sizeBytes));
  // One logfile per run; the idle runs' logfiles hold the header alone.
  expect(logfiles.map((file) => file.sequence)).toEqual([1, 2, 3, 4, 5]);
  expect(lengths.slice(1, 4)).toEqual([logfileHeaderBytes, logfileHeaderBytes,
    logfileHeaderBytes]);
  // An idle run's primary stands at the end of the logfile before its own: it holds that one.
  expect(positions.map((position) => position.sequence)).toEqual([1, 2, 3]);
  const end = { sequence: 5, offsetBytes: lengths[4]! };

  // A secondary fetches and replays across the empty logfiles to an equal disk.
  const random = seededRandom(6);
  const network = new SimulatedStreamNetwork(clock);
  const context = (host: string) => ({
    credentials: { cluster: "c1", host, secret }, random, clock,
    lamport: new LamportClock(() => clock.nowMs()),
  });
  const source = directorySource(primaryStorage, "/p/log", () => end);
  const tail = new TailWatcher(clock);
  await network.view("primary").listen(address, (connection) =>
    acceptChannel(connection, context("primary"), {
      admit: () => undefined, refused: () => {},
      opened: (session) => serveLogSession(session, {
        storage: primaryStorage, clock, tail, source: () => source, log: () => {},
      }),
    }));
  const storage = new SimulatedStorage(seededRandom(9));
  await storage.files.makeDirectory("/s");
  const fd = await storage.files.open("/s/disk", { create: true });
  await storage.files.truncate(fd, deviceBytes);
  await storage.files.close(fd);
  const replica = await Replica.open({
    resource: "r1", disk: "/s/disk", directory: "/s/r1", storage, clock,
    network: network.view("secondary"), context: context("secondary"),
    log: () => {}, changed: () => {},
  });
  replica.configure({ fetch: true, replay: true }, { peer: "primary", address });
  const replayedTo = (position: LogPosition | null) =>
    position?.sequence === end.sequence && position.offsetBytes === end.offsetBytes;
  for (let elapsed = 0; elapsed < 2_000 && !replayedTo(replica.report().replayed); elapsed += 5) {
    clock.advance(5);
    for (let round = 0; round < 4; round++) await new Promise((done) => setImmediate(done));
    replica.maintain();
  }
  expect(replica.report().replayed).toEqual(end);
  await replica.close();
  const primaryDisk = primaryStorage.contentOf("/p/disk");
  expect(Buffer.from(storage.contentOf("/s/disk")).equals(Buffer.from(primaryDisk))).toBe(true);

  // Retention deletes the empty logfiles like any other once both stand in the last one.
  const facts = logfiles.map((file, index) =>
    ({ sequence: file.sequence, lengthBytes: lengths[index]!, createdMs: 0 }));
  const members = [{ host: "primary", position: end }, { host: "secondary", position: end }];
  expect(decideRetention(facts, members, 0).deletable).toEqual([1, 2, 3, 4]);
});
