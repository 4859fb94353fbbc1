/** Both ends of a full sync over a `sync` channel session: target peer and source server. */
import { assert } from "../lib/assert.ts";
import { isMarsError, MarsError, type ErrorCode } from "../lib/errors.ts";
import type { LogPosition } from "../log/position.ts";
import type { ChunkReply, ChunkRequest } from "./chunk.ts";
import { syncWindowChunksMax, type SyncPeer } from "./full-sync.ts";
import {
  bytesToDigests, bytesToIndexes, digestsToBytes, indexesToBytes, type SyncMessage,
  type SyncWire,
} from "./wire.ts";

interface Waiter<T> {
  resolve(value: T): void;
  reject(error: MarsError): void;
}

/**
 * The target's view of a source across the network. Feed it every message of the session
 * (`receive`) and its end (`closed`); requests in flight fail when the session ends.
 */
export class RemoteSyncPeer implements SyncPeer {
  private begun: Waiter<{ source: string; sizeBytes: number; startPosition: LogPosition }>[] = [];
  private ended: Waiter<LogPosition>[] = [];
  private readonly comparisons = new Map<number, Waiter<ChunkReply>>();
  private failure: MarsError | undefined;

  constructor(private readonly wire: SyncWire, private readonly resource: string) {}

  begin() {
    return this.ask(this.begun, () => this.wire.send({
      type: "sync-begin", resource: this.resource }));
  }

  compare(request: ChunkRequest): Promise<ChunkReply> {
    if (this.failure) return Promise.reject(this.failure);
    assert(!this.comparisons.has(request.offsetBytes), "one comparison per chunk at a time");
    assert(this.comparisons.size < syncWindowChunksMax, "comparisons within the sync window");
    return new Promise<ChunkReply>((resolve, reject) => {
      this.comparisons.set(request.offsetBytes, { resolve, reject });
      this.wire.send({
        type: "sync-compare", offset: request.offsetBytes, length: request.lengthBytes,
        blockBytes: request.blockBytes, digests: digestsToBytes(request.digests),
        ...(request.chunkDigest === undefined ? {}
          : { chunkDigest: digestsToBytes(BigUint64Array.of(request.chunkDigest)) }),
      });
    });
  }

  endPosition(): Promise<LogPosition> {
    return this.ask(this.ended, () => this.wire.send({ type: "sync-end" }));
  }

  receive(message: SyncMessage): void {
    switch (message.type) {
      case "sync-begun": return this.answer(this.begun, {
        source: message.source, sizeBytes: message.sizeBytes,
        startPosition: { sequence: message.startSequence, offsetBytes: message.startOffset },
      });
      case "sync-ended": return this.answer(this.ended,
        { sequence: message.sequence, offsetBytes: message.offset });
      case "sync-blocks": {
        const waiter = this.comparisons.get(message.offset);
        if (!waiter) return this.fail(new MarsError("protocol", "unasked sync reply"));
        this.comparisons.delete(message.offset);
        return waiter.resolve({ offsetBytes: message.offset,
          blockIndexes: bytesToIndexes(message.indexes), compressed: message.compressed });
      }
      case "sync-refused": {
        const code = message.code === "unknown-resource" ? "unknown-resource" : "refused";
        return this.fail(new MarsError(code, `sync source refused: ${message.reason}`));
      }
      default: return this.fail(new MarsError("protocol", `unexpected '${message.type}'`));
    }
  }

  closed(reason: string): void {
    this.fail(new MarsError("peer-unreachable", `sync connection lost: ${reason}`));
  }

  private ask<T>(queue: Waiter<T>[], send: () => void): Promise<T> {
    if (this.failure) return Promise.reject(this.failure);
    assert(queue.length === 0, "one begin or end request at a time");
    return new Promise<T>((resolve, reject) => {
      queue.push({ resolve, reject });
      send();
    });
  }

  private answer<T>(queue: Waiter<T>[], value: T): void {
    const waiter = queue.shift();
    if (!waiter) return this.fail(new MarsError("protocol", "unasked sync reply"));
    waiter.resolve(value);
  }

  private fail(error: MarsError): void {
    this.failure ??= error;
    for (const waiter of [...this.begun, ...this.ended, ...this.comparisons.values()]) {
      waiter.reject(this.failure);
    }
    this.begun = [];
    this.ended = [];
    this.comparisons.clear();
    this.wire.close();
  }
}

/** Finds the local source for a resource, or says why this host cannot serve it. */
export type SyncSourceLookup = (resource: string) =>
  SyncPeer | { readonly code: ErrorCode; readonly reason: string };

/** The source's side of one session: answers begin, compare and end in turn. */
export function serveSyncSession(wire: SyncWire, lookup: SyncSourceLookup) {
  let source: SyncPeer | undefined;
  const refuse = (code: string, reason: string) => {
    wire.send({ type: "sync-refused", code, reason });
    wire.close();
  };
  const guarded = (action: () => Promise<void>) => {
    action().catch((error: unknown) => {
      if (!isMarsError(error)) throw error;
      refuse(error.code, error.message);
    });
  };
  return (message: SyncMessage): void => {
    if (message.type === "sync-log-end") {
      // A lone question (wait-sync's targets): each log made durable to its end, and that end.
      return guarded(async () => {
        const ends = await Promise.all(message.resources.map(async (resource) => {
          const found = lookup(resource);
          if ("code" in found) return { resource, code: found.code, reason: found.reason };
          try {
            const end = await found.endPosition();
            return { resource, sequence: end.sequence, offset: end.offsetBytes };
          } catch (error) {
            if (!isMarsError(error)) throw error;
            return { resource, code: error.code, reason: error.message };
          }
        }));
        wire.send({ type: "sync-log-ends", ends });
      });
    }
    if (message.type === "sync-begin") {
      const found = lookup(message.resource);
      if ("code" in found) return refuse(found.code, found.reason);
      source = found;
      return guarded(async () => {
        const begun = await found.begin();
        wire.send({ type: "sync-begun", source: begun.source, sizeBytes: begun.sizeBytes,
          startSequence: begun.startPosition.sequence,
          startOffset: begun.startPosition.offsetBytes });
      });
    }
    const current = source;
    if (!current) return refuse("protocol", `'${message.type}' before sync-begin`);
    if (message.type === "sync-compare") {
      return guarded(async () => {
        const reply = await current.compare({ offsetBytes: message.offset,
          lengthBytes: message.length, blockBytes: message.blockBytes,
          digests: bytesToDigests(message.digests),
          ...(message.chunkDigest ? { chunkDigest: chunkDigestOf(message.chunkDigest) } : {}) });
        wire.send({ type: "sync-blocks", offset: reply.offsetBytes,
          indexes: indexesToBytes(reply.blockIndexes), compressed: reply.compressed });
      });
    }
    if (message.type === "sync-end") {
      return guarded(async () => {
        const end = await current.endPosition();
        wire.send({ type: "sync-ended", sequence: end.sequence, offset: end.offsetBytes });
      });
    }
    refuse("protocol", `unexpected '${message.type}' on a sync source`);
  };
}

/** The one 64-bit digest of a range (exactly 8 bytes, or a protocol error). */
function chunkDigestOf(data: Uint8Array): bigint {
  if (data.length !== 8) throw new MarsError("protocol", "a chunk digest is 8 bytes");
  return bytesToDigests(data)[0]!;
}
