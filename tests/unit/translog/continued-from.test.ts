// The split point a primary publishes (continuedFrom) survives its restarts (invariant 4).
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { Storage } from "../../../src/platform/types.ts";
import { openTranslog, type Translog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const logDirectory = "/home/r1/log";

async function open(storage: Storage, host: string): Promise<Translog> {
  return openTranslog({
    storage, clock: new SimulatedClock(), directory: logDirectory, resource: "r1", host,
    backing: await openFileDevice(storage, "/home/r1/disk", { createBytes: 65536 }),
    limits: { writer: { logfileBytesMax: 5000 } },
  });
}

/** Opens as `host`, writes `count` 1 KiB blocks (each durable), closes; returns continuedFrom. */
async function run(storage: Storage, host: string, count: number, fill: number) {
  const device = await open(storage, host);
  const continuedFrom = device.continuedFrom;
  for (let index = 0; index < count; index++) {
    await device.write(index * 1024, new Uint8Array(1024).fill(fill), { fua: true });
  }
  await device.close();
  return continuedFrom;
}

test("a winner's restarts keep the split point: the end of the history it continued", async () => {
  const storage = new SimulatedStorage(seededRandom(11));
  await storage.files.makeDirectory("/home/r1");
  expect(await run(storage, "hostA", 6, 1)).toBeUndefined(); // a new history
  const names = (await storage.files.list(logDirectory)).filter((n) => n.startsWith("log-"));
  const lastOfA = names.at(-1)!;
  const split = {
    sequence: Number(lastOfA.slice(4, 13)),
    offsetBytes: storage.contentOf(`${logDirectory}/${lastOfA}`).length,
  };
  // hostB takes over the same log (as after a failover: A's logfiles fetched, then its own).
  expect(await run(storage, "hostB", 6, 2)).toEqual(split);
  // Restarted twice, with several own logfiles since: still A's end, not B's previous logfile.
  expect(await run(storage, "hostB", 6, 3)).toEqual(split);
  expect(await run(storage, "hostB", 1, 4)).toEqual(split);
  // hostA continues B's history later: its split point is B's end now.
  const beforeA = (await storage.files.list(logDirectory)).filter((n) => n.startsWith("log-"));
  const lastOfB = beforeA.at(-1)!;
  expect(await run(storage, "hostA", 1, 5)).toEqual({
    sequence: Number(lastOfB.slice(4, 13)),
    offsetBytes: storage.contentOf(`${logDirectory}/${lastOfB}`).length,
  });
});
