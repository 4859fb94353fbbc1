// Runs the block-device conformance suite against the memory and file implementations.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openFileDevice } from "../../../src/block/file.ts";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import { systemFiles } from "../../../src/platform/files.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import { createPortableEngine } from "../../../src/platform/io/portable.ts";
import type { IoEngine } from "../../../src/platform/types.ts";
import { temporaryDirectory } from "../../support/binary.ts";
import { runBlockDeviceSuite } from "../../support/block-conformance.ts";

runBlockDeviceSuite("memory", async (sizeBytes) => ({ device: createMemoryDevice(sizeBytes) }), {
  skip: { persistence: "a memory device forgets everything when closed" },
});

const engines = {
  portable: createPortableEngine,
  automatic: () => openIoEngine().engine,
};

for (const [engineName, engine] of Object.entries(engines)) {
  for (const directWrites of [false, true]) {
    const name = `file (${engineName} engine${directWrites ? ", aligned writes direct" : ""})`;
    if (engineName === "automatic" && !directWrites) continue; // the io engine has its own suite
    runBlockDeviceSuite(name, (sizeBytes) => openFile(sizeBytes, engine(), directWrites));
  }
}

async function openFile(sizeBytes: number, io: IoEngine, directWrites: boolean) {
  const directory = temporaryDirectory("mars-file-device-");
  const storage = { files: systemFiles, io };
  const path = join(directory, "disk.img");
  return {
    device: await openFileDevice(storage, path, { createBytes: sizeBytes, directWrites }),
    reopen: () => openFileDevice(storage, path, { directWrites }),
    cleanup: async () => {
      await storage.io.close();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}
