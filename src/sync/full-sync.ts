/** The target side of a full sync: pipelined digest comparison, patching, resumable cursor. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { BlockDevice } from "../block/types.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";
import { xxHash3 } from "../platform/hash.ts";
import type { Clock } from "../platform/types.ts";
import {
  blockDigests, ChunkBufferPool, ChunkBuffers, checkGeometry, defaultGeometry, patchesOf,
  type ChunkGeometry, type ChunkReply, type ChunkRequest,
} from "./chunk.ts";
import {
  checkCursor, cursorTotalBytes, type SyncCursor, type SyncCursorStore,
} from "./cursor.ts";
import { rangePieces, rangesValid, type ByteRange } from "./ranges.ts";

/** Chunks compared at once: 32 × 1 MiB in flight keeps a 120 ms line busy at ~260 MiB/s. */
export const syncWindowChunksMax = 32;
/**
 * Chunks started beyond the cursor's contiguous prefix (in flight or finished out of order):
 * one slow chunk holds the prefix back, and the copy runs at most this far ahead of it (a
 * restart redoes what lies beyond the persisted prefix).
 */
export const syncAheadChunksMax = 4 * syncWindowChunksMax;
/** Writes one chunk issues at once (× the window: well within a device's tracked requests). */
export const chunkWritesParallelMax = 16;
/** The cursor is flushed and persisted after this many chunks (a restart redoes at most these). */
export const syncPersistChunksDefault = 64;

/** The source as the target sees it: the primary's device view over the `sync` channel. */
export interface SyncPeer {
  /** Starts a sync on the source: its host, device size and where the catch-up replay starts. */
  begin(): Promise<{ source: string; sizeBytes: number; startPosition: LogPosition }>;
  /** Compares one chunk: the reply carries the source's blocks that differ from the digests. */
  compare(request: ChunkRequest): Promise<ChunkReply>;
  /**
   * Makes the source's log durable to its end and returns that end. Every block read before
   * the call is then backed by durable records: a crash of the source cannot take back what
   * the copy already holds. Replay must reach this end before the replica is consistent.
   */
  endPosition(): Promise<LogPosition>;
}

export interface FullSyncOptions {
  readonly target: BlockDevice;
  readonly peer: SyncPeer;
  readonly cursors: SyncCursorStore;
  readonly clock: Clock;
  readonly geometry?: ChunkGeometry;
  readonly windowChunks?: number;
  readonly persistEveryChunks?: number;
  /** Where chunk buffers come from (the engine's shared, page-aligned pool); else a new one. */
  readonly buffers?: ChunkBufferPool;
  /** Called after each persisted step (for `view`: sync percentage). */
  readonly progress?: (copiedBytes: number, sizeBytes: number) => void;
  /** Polled between chunks: true stops the copy at the next persisted point (pause, detach). */
  readonly stopRequested?: () => boolean;
  /**
   * A targeted sync (a split brain's repair, docs/roles.md): copy only `ranges` and replay from
   * `startPosition`, which lies before the source's current end. Used only when a new sync
   * starts from `source`; otherwise (another primary, a bad list) the whole device is copied.
   */
  readonly plan?: TargetedPlan;
}

export interface TargetedPlan {
  readonly source: string;
  readonly startPosition: LogPosition;
  readonly ranges: readonly ByteRange[];
}

export interface FullSyncOutcome {
  /** "copied": every block equals the source as of a moment after the cursor's start. */
  readonly state: "copied" | "stopped";
  readonly cursor: SyncCursor;
  /** Bytes read and compared on both sides, and blocks that differed (and travelled). */
  readonly comparedBytes: number;
  readonly transferredBlocks: number;
  /** The copy covered only the cursor's ranges (a split brain's targeted repair). */
  readonly targeted: boolean;
}

interface CopyState {
  cursor: SyncCursor;
  readonly buffers: ChunkBuffers;
  comparedBytes: number;
  transferredBlocks: number;
}

/**
 * Runs (or resumes) a full sync until every block is copied, or a stop is requested. The
 * catch-up replay from `cursor.startPosition` is the caller's (replication's) next step; the
 * replica stays inconsistent until `catchUpDone` says replay reached `cursor.endPosition`.
 */
export async function runFullSync(options: FullSyncOptions): Promise<FullSyncOutcome> {
  const geometry = options.geometry ?? defaultGeometry;
  checkGeometry(geometry);
  const cursor = await phase1Begin(options);
  const buffers = new ChunkBuffers(geometry.chunkBytes, syncWindowChunksMax,
    options.buffers ?? new ChunkBufferPool(geometry.chunkBytes));
  const state: CopyState = { cursor, buffers, comparedBytes: 0, transferredBlocks: 0 };
  const outcome = (done: "copied" | "stopped"): FullSyncOutcome => ({
    state: done, cursor: state.cursor, comparedBytes: state.comparedBytes,
    transferredBlocks: state.transferredBlocks, targeted: state.cursor.ranges !== undefined,
  });
  if (cursor.phase === "replay") return outcome("copied");
  const finished = await phase2Copy(options, geometry, state);
  if (!finished) return outcome("stopped");
  await phase3Seal(options, state);
  return outcome("copied");
}

/** Phase 1: resume the persisted cursor, or record the source's position before reading. */
async function phase1Begin(options: FullSyncOptions): Promise<SyncCursor> {
  const persisted = await options.cursors.load();
  if (persisted?.phase === "replay") return persisted;
  // Begin even when resuming: it names the resource to the source's session. A resumed sync
  // keeps its first start position (blocks copied before may predate later writes).
  const begun = await options.peer.begin();
  // Resume only from the same source: another host's device is another history.
  if (persisted && persisted.sizeBytes === begun.sizeBytes && persisted.source === begun.source) {
    return persisted;
  }
  if (begun.sizeBytes > options.target.sizeBytes) {
    throw new MarsError("disk-too-small", `the sync source has ${begun.sizeBytes} bytes, ` +
      `this disk ${options.target.sizeBytes}`);
  }
  const plan = options.plan;
  const targeted = plan !== undefined && plan.source === begun.source &&
    rangesValid(plan.ranges, begun.sizeBytes) &&
    comparePositions(plan.startPosition, begun.startPosition) <= 0;
  const cursor: SyncCursor = {
    phase: "copy", source: begun.source, sizeBytes: begun.sizeBytes,
    startPosition: targeted ? plan.startPosition : begun.startPosition, copiedBytes: 0,
    startedMs: options.clock.nowMs(), ...(targeted ? { ranges: plan.ranges } : {}),
  };
  await options.cursors.save(cursor);
  return cursor;
}

/**
 * Phase 2: a window of chunks in flight; the cursor advances over the finished prefix of the
 * work list (the whole device, or a targeted sync's ranges cut into chunk-sized pieces).
 */
async function phase2Copy(
  options: FullSyncOptions, geometry: ChunkGeometry, state: CopyState,
): Promise<boolean> {
  const windowChunks = options.windowChunks ?? syncWindowChunksMax;
  const persistEvery = options.persistEveryChunks ?? syncPersistChunksDefault;
  assert(windowChunks >= 1 && windowChunks <= syncWindowChunksMax, "sync window within bound");
  assert(persistEvery >= 1, "the cursor is persisted at least every so many chunks");
  const totalBytes = cursorTotalBytes(state.cursor);
  const ranges = state.cursor.ranges ?? [{ offsetBytes: 0, lengthBytes: state.cursor.sizeBytes }];
  const pieces = rangePieces(ranges, geometry.chunkBytes, state.cursor.copiedBytes);
  /** Finished pieces not yet in the contiguous prefix: list offset → length. */
  const finished = new Map<number, number>();
  const inFlight = new Set<Promise<void>>();
  let piecesLeft = true;
  let contiguousBytes = state.cursor.copiedBytes;
  let chunksSincePersist = 0;
  let failure: unknown;
  const stop = () => failure !== undefined || options.stopRequested?.() === true;
  for (;;) {
    while (piecesLeft && inFlight.size < windowChunks &&
      inFlight.size + finished.size < syncAheadChunksMax && !stop()) {
      const next = pieces.next();
      if (next.done) {
        piecesLeft = false;
        break;
      }
      const piece = next.value;
      const task: Promise<void> = copyChunk(options, geometry, state, piece.offsetBytes,
        piece.lengthBytes)
        .then(() => void finished.set(piece.listOffsetBytes, piece.lengthBytes),
          (error) => void (failure ??= error))
        .finally(() => inFlight.delete(task));
      inFlight.add(task);
    }
    assert(inFlight.size <= windowChunks, "chunks in flight stay within the window");
    assert(inFlight.size + finished.size <= syncAheadChunksMax,
      "chunks beyond the contiguous prefix stay within syncAheadChunksMax");
    if (inFlight.size > 0) await Promise.race(inFlight);
    // Chunks may also finish while the cursor is persisted: absorb them all before deciding.
    for (let length = finished.get(contiguousBytes); length !== undefined;
      length = finished.get(contiguousBytes)) {
      finished.delete(contiguousBytes);
      contiguousBytes += length;
      chunksSincePersist++;
    }
    if (inFlight.size === 0 && (!piecesLeft || stop())) break;
    if (chunksSincePersist >= persistEvery) {
      await persistCopied(options, state, contiguousBytes);
      chunksSincePersist = 0;
    }
  }
  if (contiguousBytes !== state.cursor.copiedBytes) {
    await persistCopied(options, state, contiguousBytes);
  }
  if (failure !== undefined) throw failure;
  return contiguousBytes === totalBytes;
}

async function copyChunk(
  options: FullSyncOptions, geometry: ChunkGeometry, state: CopyState,
  offsetBytes: number, lengthBytes: number,
): Promise<void> {
  const local = state.buffers.take(lengthBytes);
  let digests: BigUint64Array;
  let chunkDigest: bigint;
  try {
    await options.target.read(offsetBytes, local);
    digests = blockDigests(local, geometry.blockBytes);
    // The bytes are in the cache now: the whole-range digest costs little here and spares the
    // source the per-block pass for every chunk that is equal (all of them, for a new member).
    chunkDigest = xxHash3(local);
  } finally {
    state.buffers.release(local);
  }
  const request: ChunkRequest = { offsetBytes, lengthBytes, blockBytes: geometry.blockBytes,
    digests, chunkDigest };
  const reply = await options.peer.compare(request);
  const patches = patchesOf(request, reply);
  for (let start = 0; start < patches.length; start += chunkWritesParallelMax) {
    await Promise.all(patches.slice(start, start + chunkWritesParallelMax).map((patch) =>
      options.target.write(patch.offsetBytes, patch.data, { fua: false })));
  }
  state.comparedBytes += lengthBytes;
  state.transferredBlocks += reply.blockIndexes.length;
}

/** Blocks below `copiedBytes` are on the target durably before the cursor says so. */
async function persistCopied(
  options: FullSyncOptions, state: CopyState, copiedBytes: number,
): Promise<void> {
  assert(copiedBytes >= state.cursor.copiedBytes, "the sync cursor never goes back");
  // What was copied may come from records not yet durable at the source: make them durable
  // before the cursor claims the blocks, or a source crash could take them back.
  await options.peer.endPosition();
  await options.target.flush();
  const cursor: SyncCursor = { ...state.cursor, copiedBytes };
  await options.cursors.save(cursor);
  state.cursor = cursor;
  options.progress?.(copiedBytes, cursorTotalBytes(cursor));
}

/** Phase 3: every block copied; record where the catch-up replay must get to. */
async function phase3Seal(options: FullSyncOptions, state: CopyState): Promise<void> {
  assert(state.cursor.copiedBytes === cursorTotalBytes(state.cursor),
    "seal only a complete copy");
  await options.target.flush();
  const endPosition = await options.peer.endPosition();
  assert(comparePositions(endPosition, state.cursor.startPosition) >= 0,
    "the source's log does not go back during a sync");
  const cursor: SyncCursor = { ...state.cursor, phase: "replay", endPosition };
  checkCursor(cursor);
  await options.cursors.save(cursor);
  state.cursor = cursor;
}

/**
 * After the catch-up replay has reached `replayedPosition`: true (and the cursor is cleared)
 * when the replica is consistent again, false while it must keep replaying.
 */
export async function catchUpDone(
  cursors: SyncCursorStore, replayedPosition: LogPosition,
): Promise<boolean> {
  const cursor = await cursors.load();
  if (!cursor) return true;
  if (cursor.phase !== "replay") return false;
  if (comparePositions(replayedPosition, cursor.endPosition!) < 0) return false;
  await cursors.clear();
  return true;
}
