// A restarted secondary with a complete copy of a logfile its source deleted needs no full sync.
import { expect, test } from "bun:test";
import { chainStartDigest, type LogPosition } from "../../src/log/position.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { Fetcher } from "../../src/replication/fetcher.ts";
import { chainDigestOfFile, logfilePath } from "../../src/replication/log-files.ts";
import { directorySource } from "../../src/replication/log-server.ts";
import { logServerRig, primaryAddress as address, runFor } from "../support/log-shipping-rig.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

const recordsPerLogfile = 12;

/** A primary whose first logfile is finished and whose second one the test starts later. */
async function setUp() {
  const { clock, network, context, primaryStorage, serve } = await logServerRig(31);
  const first = await LogWriter.start({
    storage: primaryStorage, clock, directory: "/p", resource: "r1", origin: "primary",
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let index = 0; index < recordsPerLogfile; index++) append(first, index);
  const closed = await first.close();
  const firstLength = closed.end.offsetBytes;
  // The first logfile is finished; nothing of the next one is durable yet.
  serve(directorySource(primaryStorage, "/p", () => closed.end,
    (sequence) => (sequence === 1 ? firstLength : undefined)));
  const storage = new SimulatedStorage(seededRandom(4));
  await storage.files.makeDirectory("/s");
  const fetcher = async () => {
    const made = new Fetcher({
      resource: "r1", directory: "/s/r1", storage, clock, network: network.view("secondary"),
      context: context("secondary"), rateBytesPerSecondMax: 0, progressed: () => {},
      log: () => {},
    });
    await made.load();
    return made;
  };
  const run = (durationMs: number, maintained: Fetcher) =>
    runFor(clock, durationMs, () => maintained.retryAfterFailure());
  /** The primary goes on in logfile 2, whose header names `previousDigest`; logfile 1 goes. */
  const continueLog = async (previousDigest: Uint8Array) => {
    const second = await LogWriter.start({
      storage: primaryStorage, clock, directory: "/p", resource: "r1", origin: "primary",
    }, { logfileSequence: 2, firstRecordSequence: recordsPerLogfile + 1, previousDigest,
      stampFloor: closed.lastStamp });
    for (let index = 0; index < recordsPerLogfile; index++) append(second, 100 + index);
    await second.flush();
    serve(directorySource(primaryStorage, "/p", () => second.durableEnd));
    await primaryStorage.files.remove(logfilePath("/p", 1, "primary"));
    return second;
  };
  const chainOfFirst = () =>
    chainDigestOfFile(primaryStorage, logfilePath("/p", 1, "primary"), firstLength);
  return { storage, primaryStorage, fetcher, run, continueLog, chainOfFirst, firstLength };
}

function append(writer: LogWriter, index: number): void {
  const payload = new Uint8Array(4096).fill(index + 1);
  writer.append({ kind: "write", deviceOffset: (index % 32) * 4096, lengthBytes: 4096, payload });
}

/** Fetches logfile 1 to its end (log-finished included), then stops, as an engine stop does. */
async function fetchFirstLogfile(setup: Awaited<ReturnType<typeof setUp>>) {
  const first = await setup.fetcher();
  first.start({ peer: "primary", address });
  await setup.run(300, first);
  const fetched: LogPosition = first.fetchedEnd;
  expect(fetched).toEqual({ sequence: 1, offsetBytes: setup.firstLength });
  expect(first.extent(1)?.finished).toBe(true);
  first.stop();
}

test("a restarted fetcher with a complete newest copy asks for the next logfile", async () => {
  const setup = await setUp();
  await fetchFirstLogfile(setup);
  const second = await setup.continueLog(await setup.chainOfFirst());
  const restarted = await setup.fetcher();
  restarted.start({ peer: "primary", address });
  await setup.run(300, restarted);
  expect(restarted.problem).toBe("");
  expect(restarted.extent(1)?.finished).toBe(true);
  expect(restarted.state).toBe("streaming");
  expect(restarted.fetchedEnd).toEqual(second.durableEnd);
  const copied = setup.storage.contentOf(logfilePath("/s/r1", 2, "primary"));
  const original = setup.primaryStorage.contentOf(logfilePath("/p", 2, "primary"))
    .subarray(0, second.durableEnd.offsetBytes); // the writer preallocates beyond its end
  expect(Buffer.from(copied).equals(Buffer.from(original))).toBe(true);
});

test("across that boundary the version chain is still checked", async () => {
  const setup = await setUp();
  await fetchFirstLogfile(setup);
  await setup.continueLog(new Uint8Array(32).fill(9));
  const restarted = await setup.fetcher();
  restarted.start({ peer: "primary", address });
  await setup.run(300, restarted);
  expect(restarted.state).toBe("split-brain");
  expect(restarted.extent(2)).toBeUndefined();
});

test("a newest copy that is not the finished one is fetched on from its length", async () => {
  const setup = await setUp();
  await fetchFirstLogfile(setup);
  // The copy changed after it was finished here (cut back): the record of it is not trusted.
  const path = logfilePath("/s/r1", 1, "primary");
  const fd = await setup.storage.files.open(path, {});
  await setup.storage.files.truncate(fd, setup.firstLength - 100);
  await setup.storage.io.submit([{ kind: "fsync", fd, dataOnly: false }]);
  await setup.storage.files.close(fd);
  const restarted = await setup.fetcher();
  expect(restarted.extent(1)?.finished).toBe(false);
  expect(restarted.fetchedEnd.sequence).toBe(1);
});
