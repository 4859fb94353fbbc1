// Runs the block-device conformance suite against the memory and file implementations.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openFileDevice } from "../../../src/block/file.ts";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import { temporaryDirectory } from "../../support/binary.ts";
import { runBlockDeviceSuite } from "../../support/block-conformance.ts";

runBlockDeviceSuite("memory", async (sizeBytes) => ({ device: createMemoryDevice(sizeBytes) }), {
  skip: { persistence: "a memory device forgets everything when closed" },
});

runBlockDeviceSuite("file", async (sizeBytes) => {
  const directory = temporaryDirectory("mars-file-device-");
  const storage = { files: systemFiles, io: createPortableEngine() };
  const path = join(directory, "disk.img");
  return {
    device: await openFileDevice(storage, path, { createBytes: sizeBytes }),
    reopen: () => openFileDevice(storage, path),
    cleanup: async () => {
      await storage.io.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
});
