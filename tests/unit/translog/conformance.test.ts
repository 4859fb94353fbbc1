// The translog passes the block-device conformance suite over a simulated and a real disk.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openFileDevice } from "../../../src/block/file.ts";
import { systemClock } from "../../../src/platform/clock.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { temporaryDirectory } from "../../support/binary.ts";
import { runBlockDeviceSuite } from "../../support/block-conformance.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

runBlockDeviceSuite("translog over a simulated disk", async (sizeBytes) => {
  const storage = new SimulatedStorage(seededRandom(1));
  await storage.files.makeDirectory("/home/r1");
  const open = async () => openTranslog({
    storage, clock: new SimulatedClock(), directory: "/home/r1/log", resource: "r1",
    host: "hostA",
    backing: await openFileDevice(storage, "/home/r1/disk", { createBytes: sizeBytes }),
    limits: { overlayBytesMax: 256 * 1024 },
  });
  return { device: await open(), reopen: open };
}, { sizeBytes: 1024 * 1024 });

runBlockDeviceSuite("translog over real files", async (sizeBytes) => {
  const directory = temporaryDirectory("mars-translog-");
  const storage = { files: systemFiles, io: createPortableEngine() };
  const open = async () => openTranslog({
    storage, clock: systemClock, directory: join(directory, "log"), resource: "r1",
    host: "hostA",
    backing: await openFileDevice(storage, join(directory, "disk"), { createBytes: sizeBytes }),
  });
  return {
    device: await open(), reopen: open,
    cleanup: async () => {
      await storage.io.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
});
