// Rotation by age: a quiet resource's log still comes in logfiles retention can delete.
import { expect, test } from "bun:test";
import { chainStartDigest } from "../../../src/log/position.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { LogWriter } from "../../../src/log/writer.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

async function writeSpread(logfileAgeMsMax: number): Promise<string[]> {
  const storage = new SimulatedStorage(seededRandom(3));
  const clock = new SimulatedClock();
  await storage.files.makeDirectory("/log");
  const writer = await LogWriter.start({
    storage, clock, directory: "/log", resource: "r", origin: "hostA",
    limits: { logfileAgeMsMax, preallocateBytesMin: 0, preallocateBytesMax: 0 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let minute = 0; minute < 10; minute++) {
    writer.append({ kind: "trim", deviceOffset: minute * 512, lengthBytes: 512 });
    await writer.flush();
    clock.advance(60_000);
  }
  await writer.close();
  return (await listLogfiles(storage, "/log")).map((file) => file.name);
}

test("a logfile older than logfileAgeMsMax is finished at the next append", async () => {
  expect((await writeSpread(3 * 60_000)).length).toBe(4);
  expect((await writeSpread(0)).length).toBe(1);
});
