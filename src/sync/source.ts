/** The source side of a full sync: answers chunk comparisons from the primary's device view. */
import { MarsError } from "../lib/errors.ts";
import type { BlockDevice } from "../block/types.ts";
import type { LogPosition } from "../log/position.ts";
import {
  answerChunk, ChunkBufferPool, ChunkBuffers, checkRequest, syncChunkBytes, type ChunkReply,
  type ChunkRequest,
} from "./chunk.ts";
import type { SyncPeer } from "./full-sync.ts";

/** Chunk comparisons one source serves at once (each holds one chunk in memory). */
export const sourceComparisonsMax = 32;

export interface SyncSourceOptions {
  readonly host: string;
  /**
   * What the sync reads. The translog's device view (overlay + disk) pairs with the log end;
   * the raw backing disk lags the overlay and pairs with the writeback position (DESIGN §5).
   */
  readonly view: BlockDevice;
  readonly reads: "device-view" | "raw-disk";
  readonly logEnd: () => LogPosition;
  readonly writebackPosition: () => LogPosition;
  /** Where chunk buffers come from (the engine's shared, page-aligned pool); else a new one. */
  readonly buffers?: ChunkBufferPool;
}

/** The rule "a full sync reads the device view, or replays from the writeback position". */
export function catchUpStart(options: SyncSourceOptions): LogPosition {
  return options.reads === "device-view" ? options.logEnd() : options.writebackPosition();
}

/** A SyncPeer served in this process: the wire adapter and tests wrap it. */
export function localSyncSource(options: SyncSourceOptions): SyncPeer {
  let comparisons = 0;
  let buffers: ChunkBuffers | undefined;
  return {
    async begin() {
      return {
        source: options.host, sizeBytes: options.view.sizeBytes,
        startPosition: catchUpStart(options),
      };
    },
    async compare(request: ChunkRequest): Promise<ChunkReply> {
      checkRequest(request, options.view.sizeBytes);
      comparisons++;
      try {
        if (comparisons > sourceComparisonsMax) {
          throw new MarsError("protocol",
            `the sync peer has more than ${sourceComparisonsMax} comparisons in flight`);
        }
        buffers ??= new ChunkBuffers(syncChunkBytes, sourceComparisonsMax,
          options.buffers ?? new ChunkBufferPool(syncChunkBytes));
        const data = buffers.take(request.lengthBytes);
        try {
          await options.view.read(request.offsetBytes, data);
          return answerChunk(request, data);
        } finally {
          buffers.release(data);
        }
      } finally {
        comparisons--;
      }
    },
    async endPosition() {
      const end = options.logEnd();
      await options.view.flush();
      return end;
    },
  };
}
