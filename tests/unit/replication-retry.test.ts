// A secondary whose disk fails for a while (no space, I/O errors) resumes fetch and replay.
import { expect, test } from "bun:test";
import { replicaRig } from "../support/log-shipping-rig.ts";

test("write failures on the secondary stop fetch and replay; both resume after them", async () => {
  const { writer, storage, replica, model, write, run } = await replicaRig(21, 256 * 1024);
  for (let index = 0; index < 8; index++) write(index);
  await run(200);
  storage.injectFault = (operation) => (operation.kind === "write" ? "ENOSPC" : undefined);
  for (let index = 8; index < 40; index++) write(index);
  await run(500);
  const failed = replica.report();
  expect([failed.fetchState, failed.replayState]).toContain("failed");
  expect(failed.status).toBe("failed");
  storage.injectFault = undefined;
  await run(8_000);
  const healed = replica.report();
  expect(healed.status).toBe("caught-up");
  expect(healed.replayed).toEqual(writer.durableEnd);
  expect(Buffer.from(storage.contentOf("/s/disk")).equals(Buffer.from(model))).toBe(true);
});
