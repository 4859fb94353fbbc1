// Every translog open starts a logfile: idle restarts leave empty ones, replicated and deleted.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { logfileHeaderBytes } from "../../../src/log/format.ts";
import type { LogPosition } from "../../../src/log/position.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { directorySource } from "../../../src/replication/log-server.ts";
import { decideRetention } from "../../../src/retention/policy.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { logServerRig, runFor, secondaryReplica } from "../../support/log-shipping-rig.ts";
import type { SimulatedClock } from "../../support/simulated-clock.ts";
import type { SimulatedStorage } from "../../support/simulated-storage.ts";

const deviceBytes = 64 * 1024;
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
  const rig = await logServerRig(5);
  const { clock, primaryStorage } = rig;
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
  rig.serve(directorySource(primaryStorage, "/p/log", () => end));
  const { storage, replica } = await secondaryReplica(rig, 9, deviceBytes);
  const replayedTo = (position: LogPosition | null) =>
    position?.sequence === end.sequence && position.offsetBytes === end.offsetBytes;
  for (let elapsed = 0; elapsed < 2_000 && !replayedTo(replica.report().replayed); elapsed += 5) {
    await runFor(clock, 5, () => replica.maintain());
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
