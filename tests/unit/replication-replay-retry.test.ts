// A secondary whose disk alone fails for a while resumes replay without skipping a record.
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
const secret = new Uint8Array(32).fill(6);
const deviceBytes = 256 * 1024;

test("replay writes that fail on the disk alone (a disk too small after a resize) are applied " +
  "once it works again, none skipped", async () => {
  const clock = new SimulatedClock();
  const random = seededRandom(21);
  const network = new SimulatedStreamNetwork(clock);
  const context = (host: string) => ({
    credentials: { cluster: "c1", host, secret }, random, clock,
    lamport: new LamportClock(() => clock.nowMs()),
  });
  const primaryStorage = new SimulatedStorage(seededRandom(1));
  await primaryStorage.files.makeDirectory("/p");
  const writer = await LogWriter.start({
    storage: primaryStorage, clock, directory: "/p", resource: "r1", origin: "primary",
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
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
  const run = async (durationMs: number) => {
    for (let elapsed = 0; elapsed < durationMs; elapsed += 5) {
      clock.advance(5);
      for (let round = 0; round < 4; round++) await new Promise((done) => setImmediate(done));
      replica.maintain();
    }
  };
  const model = new Uint8Array(deviceBytes);
  const write = (index: number) => {
    const payload = new Uint8Array(4096).fill(index + 1);
    const offset = (index * 4096) % deviceBytes;
    writer.append({ kind: "write", deviceOffset: offset, lengthBytes: 4096, payload });
    model.set(payload, offset);
  };
  for (let index = 0; index < 8; index++) write(index);
  await run(200);
  // Only the replica's disk fails: the fetcher goes on, replay applies into the failure.
  const inodes = (storage as unknown as { descriptors: Map<number, unknown> }).descriptors;
  const diskFd = await storage.files.open("/s/disk", {});
  const disk = inodes.get(diskFd);
  storage.injectFault = (operation) =>
    (operation.kind === "write" && inodes.get(operation.fd) === disk ? "ENOSPC" : undefined);
  for (let index = 8; index < 40; index++) write(index);
  await run(500);
  const failed = replica.report();
  expect(failed.replayState).toBe("failed");
  expect(failed.status).toBe("failed");
  storage.injectFault = undefined;
  await run(8_000);
  const healed = replica.report();
  expect(healed.status).toBe("caught-up");
  expect(healed.replayed).toEqual(writer.durableEnd);
  expect(Buffer.from(storage.contentOf("/s/disk")).equals(Buffer.from(model))).toBe(true);
});
