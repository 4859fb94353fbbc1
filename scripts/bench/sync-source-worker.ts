// The sync bench's source in its own thread, as on its own host: answers chunk comparisons.
import { openFileDevice, type FileDevice } from "../../src/block/file.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { openIoEngine } from "../../src/platform/io/index.ts";
import { ChunkBufferPool, syncChunkBytes } from "../../src/sync/chunk.ts";
import type { SyncPeer } from "../../src/sync/full-sync.ts";
import { localSyncSource } from "../../src/sync/source.ts";

export type SourceRequest =
  | { type: "open"; path: string; direct: boolean }
  | { type: "compare"; id: number; request: Parameters<SyncPeer["compare"]>[0] }
  | { type: "close" };

declare const self: Worker;
const io = openIoEngine();
const pool = new ChunkBufferPool(syncChunkBytes, io.engine.allocateBuffer?.bind(io.engine));
let device: FileDevice | undefined;
let source: SyncPeer | undefined;

self.onmessage = async (event: MessageEvent<SourceRequest>) => {
  const message = event.data;
  if (message.type === "open") {
    const storage = { files: systemFiles, io: io.engine };
    device = await openFileDevice(storage, message.path,
      { direct: message.direct, readOnly: true });
    source = localSyncSource({
      host: "source", view: device, reads: "device-view",
      logEnd: () => ({ sequence: 1, offsetBytes: 0 }),
      writebackPosition: () => ({ sequence: 1, offsetBytes: 0 }), buffers: pool,
    });
    self.postMessage({ type: "opened", sizeBytes: device.sizeBytes });
  } else if (message.type === "compare") {
    const reply = await source!.compare(message.request);
    self.postMessage({ type: "reply", id: message.id, reply });
  } else {
    await device?.close();
    device = undefined;
    self.postMessage({ type: "closed" });
  }
};
