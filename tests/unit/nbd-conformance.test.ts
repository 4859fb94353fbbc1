// The block-device conformance suite, run through the NBD server over a real unix socket.
import { rmSync } from "node:fs";
import { join } from "node:path";
import { openFileDevice } from "../../src/block/file.ts";
import { createMemoryDevice } from "../../src/block/memory.ts";
import type { BlockDevice } from "../../src/block/types.ts";
import { connectNbdDevice } from "../../src/nbd/client.ts";
import { NbdServer } from "../../src/nbd/server.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { createPortableEngine } from "../../src/platform/io/portable.ts";
import { bunNetwork } from "../../src/platform/network.ts";
import type { Address } from "../../src/platform/types.ts";
import { temporaryDirectory } from "../support/binary.ts";
import { runBlockDeviceSuite } from "../support/block-conformance.ts";

/** Serves `device` on a fresh socket; the subject is an NBD client device talking to it. */
async function overNbd(device: BlockDevice, directory: string, release: () => Promise<void>) {
  const address: Address = { kind: "unix", path: join(directory, "nbd.sock") };
  const server = new NbdServer({ exports: [{ name: "disk", device }] });
  const listener = await bunNetwork.listen(address, server.accept);
  const connect = () => connectNbdDevice((handlers) => bunNetwork.connect(address, handlers));
  return {
    device: await connect(),
    reopen: connect,
    cleanup: async () => {
      listener.close();
      await server.shutdown();
      await device.close();
      await release();
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

runBlockDeviceSuite("nbd client → server → memory", async (sizeBytes) => {
  const directory = temporaryDirectory("mars-nbd-conformance-");
  return overNbd(createMemoryDevice(sizeBytes), directory, async () => {});
});

runBlockDeviceSuite("nbd client → server → file", async (sizeBytes) => {
  const directory = temporaryDirectory("mars-nbd-conformance-");
  const storage = { files: systemFiles, io: createPortableEngine() };
  const device = await openFileDevice(storage, join(directory, "disk.img"),
    { createBytes: sizeBytes });
  return overNbd(device, directory, () => storage.io.close());
});
