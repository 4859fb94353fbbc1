// A secondary whose disk alone fails for a while resumes replay without skipping a record.
import { expect, test } from "bun:test";
import { replicaRig } from "../support/log-shipping-rig.ts";

test("replay writes that fail on the disk alone (a disk too small after a resize) are applied " +
  "once it works again, none skipped", async () => {
  const { writer, storage, replica, model, write, run } = await replicaRig(21, 256 * 1024);
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
