// Split brain stops fetching: a logfile number from another origin, or a copy that diverged.
import { expect, test } from "bun:test";
import { LamportClock } from "../../src/cluster/lamport.ts";
import { chainStartDigest } from "../../src/log/position.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { directorySource, serveLogSession } from "../../src/replication/log-server.ts";
import { Replica } from "../../src/replication/replica.ts";
import { TailWatcher } from "../../src/replication/tail-watcher.ts";
import { acceptChannel } from "../../src/transport/channel.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../support/simulated-network.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const address = { kind: "tcp" as const, host: "primary", port: 7777 };
const secret = new Uint8Array(32).fill(5);

async function writeLog(
  storage: SimulatedStorage, clock: SimulatedClock, directory: string, origin: string,
  records: number, fill: number,
): Promise<LogWriter> {
  await storage.files.makeDirectory(directory);
  const writer = await LogWriter.start({
    storage, clock, directory, resource: "r1", origin,
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let index = 0; index < records; index++) {
    clock.advance(1);
    writer.append({ kind: "write", deviceOffset: index * 4096, lengthBytes: 4096,
      payload: new Uint8Array(4096).fill(fill + index) });
  }
  await writer.flush();
  return writer;
}

async function scenario(secondaryOrigin: string, secondaryRecords: number) {
  const clock = new SimulatedClock();
  const random = seededRandom(11);
  const network = new SimulatedStreamNetwork(clock);
  const context = (host: string) => ({
    credentials: { cluster: "c1", host, secret }, random, clock,
    lamport: new LamportClock(() => clock.nowMs()),
  });
  const primaryStorage = new SimulatedStorage(seededRandom(1));
  const writer = await writeLog(primaryStorage, clock, "/p", "primary", 8, 1);
  const source = directorySource(primaryStorage, "/p", () => writer.durableEnd);
  const tail = new TailWatcher(clock);
  await network.view("primary").listen(address, (connection) =>
    acceptChannel(connection, context("primary"), {
      admit: () => undefined, refused: () => {},
      opened: (session) => serveLogSession(session, {
        storage: primaryStorage, clock, tail, source: () => source, log: () => {},
      }),
    }));
  const storage = new SimulatedStorage(seededRandom(2));
  // The secondary holds logfile 1 of another history (other content, maybe another origin).
  clock.advance(50);
  const other = await writeLog(storage, clock, "/s/r1", secondaryOrigin, secondaryRecords, 100);
  await other.close();
  const fd = await storage.files.open("/s/disk", { create: true });
  await storage.files.truncate(fd, 1 << 20);
  await storage.files.close(fd);
  const name = `/s/r1/log-000000001-${secondaryOrigin}`;
  const before = storage.contentOf(name);
  const replica = await Replica.open({
    resource: "r1", disk: "/s/disk", directory: "/s/r1", storage, clock,
    network: network.view("secondary"), context: context("secondary"),
    log: () => {}, changed: () => {},
  });
  replica.configure({ fetch: true, replay: false }, { peer: "primary", address });
  for (let step = 0; step < 200; step++) {
    clock.advance(5);
    for (let round = 0; round < 4; round++) await new Promise((resolve) => setImmediate(resolve));
  }
  return { replica, before, after: storage.contentOf(name) };
}

test("a logfile number written by another origin here is a split brain", async () => {
  const { replica, before, after } = await scenario("intruder", 3);
  expect(replica.report().status).toBe("split-brain");
  expect(replica.report().problem).toContain("written by primary here, by intruder there");
  expect(Buffer.from(after).equals(Buffer.from(before))).toBe(true);
});

test("a copy whose bytes diverged before the resume point is a split brain", async () => {
  const { replica, before, after } = await scenario("primary", 3);
  expect(replica.report().status).toBe("split-brain");
  expect(replica.report().problem).toContain("the copies differ before offset");
  expect(Buffer.from(after).equals(Buffer.from(before))).toBe(true);
});
