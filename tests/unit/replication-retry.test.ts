// A secondary whose disk fails for a while (no space, I/O errors) resumes fetch and replay.
import { expect, test } from "bun:test";
import type { IoOperation } from "../../src/platform/types.ts";
import { replicaRig } from "../support/log-shipping-rig.ts";

type Rig = Awaited<ReturnType<typeof replicaRig>>;

/**
 * Writes while `fault` fails some of the secondary's writes, checks the failure it reports, then
 * lifts the fault: the replica must catch up with nothing skipped (its disk equals the model).
 */
async function healsAfter(
  rig: Rig, fault: (operation: IoOperation) => string | undefined,
  checkFailed: (report: ReturnType<Rig["replica"]["report"]>) => void,
): Promise<void> {
  const { writer, storage, replica, model, write, run } = rig;
  storage.injectFault = fault;
  for (let index = 8; index < 40; index++) write(index);
  await run(500);
  const failed = replica.report();
  checkFailed(failed);
  expect(failed.status).toBe("failed");
  storage.injectFault = undefined;
  await run(8_000);
  const healed = replica.report();
  expect(healed.status).toBe("caught-up");
  expect(healed.replayed).toEqual(writer.durableEnd);
  expect(Buffer.from(storage.contentOf("/s/disk")).equals(Buffer.from(model))).toBe(true);
}

async function startedRig(): Promise<Rig> {
  const rig = await replicaRig(21, 256 * 1024);
  for (let index = 0; index < 8; index++) rig.write(index);
  await rig.run(200);
  return rig;
}

test("write failures on the secondary stop fetch and replay; both resume after them", async () => {
  const rig = await startedRig();
  await healsAfter(rig, (operation) => (operation.kind === "write" ? "ENOSPC" : undefined),
    (failed) => expect([failed.fetchState, failed.replayState]).toContain("failed"));
});

test("replay writes that fail on the disk alone (a disk too small after a resize) are applied " +
  "once it works again, none skipped", async () => {
  const rig = await startedRig();
  // Only the replica's disk fails: the fetcher goes on, replay applies into the failure.
  const inodes = (rig.storage as unknown as { descriptors: Map<number, unknown> }).descriptors;
  const diskFd = await rig.storage.files.open("/s/disk", {});
  const disk = inodes.get(diskFd);
  await healsAfter(rig, (operation) =>
    (operation.kind === "write" && inodes.get(operation.fd) === disk ? "ENOSPC" : undefined),
  (failed) => expect(failed.replayState).toBe("failed"));
});
