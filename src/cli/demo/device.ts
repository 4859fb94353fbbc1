/** What the demo's steps share: the primary's export, random writes, digests and waiting. */
import { assert } from "../../lib/assert.ts";
import { MarsError } from "../../lib/errors.ts";
import type { BlockDevice } from "../../block/types.ts";
import { connectNbdDevice } from "../../nbd/client.ts";
import { sha256TextHasher } from "../../platform/file-digest.ts";
import { systemFiles } from "../../platform/files.ts";
import { bunNetwork } from "../../platform/network.ts";
import { secureRandomBytes } from "../../platform/random.ts";
import type { DemoHost } from "./host.ts";

/** Size of each demo write; also the granularity of the verification reads. */
export const writeChunkBytes = 64 * 1024;
export const resource = "demo";

export const sleep = (milliseconds: number) =>
  new Promise<void>((resolve) => setTimeout(resolve, milliseconds));

/** Writes `writeBytes` of random 64 KiB chunks at random chunk-aligned offsets. */
export async function writeRandomChunks(device: BlockDevice, writeBytes: number): Promise<void> {
  const chunkCount = Math.floor(device.sizeBytes / writeChunkBytes);
  assert(chunkCount > 0, "the demo device holds at least one chunk");
  const index = new Uint8Array(4);
  const indexView = new DataView(index.buffer);
  for (let written = 0; written < writeBytes; written += writeChunkBytes) {
    const data = secureRandomBytes(new Uint8Array(writeChunkBytes));
    secureRandomBytes(index);
    const chunk = indexView.getUint32(0, true) % chunkCount;
    await device.write(chunk * writeChunkBytes, data, { fua: false });
  }
}

/** sha256 of everything `device` holds, read through NBD. */
export async function deviceDigest(device: BlockDevice): Promise<string> {
  const hasher = sha256TextHasher();
  const buffer = new Uint8Array(writeChunkBytes * 16);
  for (let offset = 0; offset < device.sizeBytes; offset += buffer.length) {
    const piece = buffer.subarray(0, Math.min(buffer.length, device.sizeBytes - offset));
    await device.read(offset, piece);
    hasher.update(piece);
  }
  return hasher.hex();
}

/** Connects to `host`'s unix-socket export of the demo resource (waits for it to appear). */
export async function openExport(host: DemoHost): Promise<BlockDevice> {
  let socket: string | undefined;
  await waitFor(async () => {
    const exported = (await host.view()).resources[0]?.export ?? "";
    socket = /socket=([^&]+)/.exec(exported)?.[1];
    return socket !== undefined;
  }, 15_000, `${host.name} to export '${resource}'`);
  return connectNbdDevice((handlers) =>
    bunNetwork.connect({ kind: "unix", path: decodeURIComponent(socket!) }, handlers));
}

export async function sparseDisk(path: string, sizeBytes: number): Promise<void> {
  const fd = await systemFiles.open(path, { create: true });
  try {
    await systemFiles.truncate(fd, sizeBytes);
  } finally {
    await systemFiles.close(fd);
  }
}

export async function waitFor(condition: () => Promise<boolean>, timeoutMs: number,
  what: string): Promise<void> {
  for (let waitedMs = 0; !(await condition()); waitedMs += 100) {
    if (waitedMs > timeoutMs) throw new MarsError("timeout", `timed out waiting for ${what}`);
    await sleep(100);
  }
}
