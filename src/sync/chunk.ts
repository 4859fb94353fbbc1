/** Block digests of one sync chunk and the reply that carries only the blocks that differ. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { xxHash3 } from "../platform/hash.ts";
import { zstdCompress, zstdDecompress } from "../platform/compress.ts";

/** The unit compared and transferred: one digest per block. */
export const syncBlockBytes = 4096;
/** Bytes compared per request, and the most one request may cover (its reply fits a frame). */
export const syncChunkBytes = 1024 * 1024;
/** Blocks in one chunk, and so digests in one request; the wire format checks it. */
export const chunkBlocksMax = 1024;

export interface ChunkGeometry {
  readonly blockBytes: number;
  readonly chunkBytes: number;
}

export const defaultGeometry: ChunkGeometry = {
  blockBytes: syncBlockBytes, chunkBytes: syncChunkBytes,
};

export function checkGeometry(geometry: ChunkGeometry): void {
  assert(geometry.blockBytes >= 512 && geometry.blockBytes % 512 === 0,
    "sync blocks are whole sectors");
  assert(geometry.chunkBytes % geometry.blockBytes === 0, "a chunk is whole blocks");
  assert(geometry.chunkBytes <= syncChunkBytes, "a chunk is at most syncChunkBytes");
  assert(geometry.chunkBytes / geometry.blockBytes <= chunkBlocksMax,
    "a chunk has at most chunkBlocksMax blocks");
}

/** What the target sends: its digests of the blocks in [offsetBytes, offsetBytes + length). */
export interface ChunkRequest {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
  readonly blockBytes: number;
  /** One xxHash3 per block; the last block may be short when the device ends mid-block. */
  readonly digests: BigUint64Array;
  /**
   * xxHash3 of the whole range: a source whose range hashes the same answers "all equal"
   * without hashing block by block (one pass over its bytes instead of one call per block).
   */
  readonly chunkDigest?: bigint;
}

/** What the source answers: the blocks whose digests differ, in ascending order, compressed. */
export interface ChunkReply {
  readonly offsetBytes: number;
  /** Indexes (within the chunk) of the blocks carried. */
  readonly blockIndexes: readonly number[];
  /** zstd of the carried blocks' bytes, concatenated; empty when nothing differs. */
  readonly compressed: Uint8Array;
}

function blockCount(lengthBytes: number, blockBytes: number): number {
  return Math.ceil(lengthBytes / blockBytes);
}

/** The digest of every block of `data` (the last one may be short). */
export function blockDigests(data: Uint8Array, blockBytes: number): BigUint64Array {
  const count = blockCount(data.length, blockBytes);
  assert(count <= chunkBlocksMax, "digests per chunk stay within chunkBlocksMax");
  const digests = new BigUint64Array(count);
  for (let index = 0; index < count; index++) {
    digests[index] = xxHash3(data.subarray(index * blockBytes, (index + 1) * blockBytes));
  }
  return digests;
}

/** The source side: compares its bytes of the chunk with the target's digests. */
export function answerChunk(request: ChunkRequest, sourceData: Uint8Array): ChunkReply {
  assert(sourceData.length === request.lengthBytes, "the source read the requested range");
  const blockBytes = request.blockBytes;
  const count = blockCount(request.lengthBytes, blockBytes);
  if (request.digests.length !== count) {
    throw new MarsError("protocol", `sync request has ${request.digests.length} digests, ` +
      `its range needs ${count}`);
  }
  if (request.chunkDigest !== undefined && xxHash3(sourceData) === request.chunkDigest) {
    return { offsetBytes: request.offsetBytes, blockIndexes: [], compressed: new Uint8Array(0) };
  }
  const sourceDigests = blockDigests(sourceData, blockBytes);
  const blockIndexes: number[] = [];
  for (let index = 0; index < count; index++) {
    if (sourceDigests[index] !== request.digests[index]) blockIndexes.push(index);
  }
  if (blockIndexes.length === 0) {
    return { offsetBytes: request.offsetBytes, blockIndexes, compressed: new Uint8Array(0) };
  }
  const parts = blockIndexes.map((index) =>
    sourceData.subarray(index * blockBytes, (index + 1) * blockBytes));
  const total = parts.reduce((sum, part) => sum + part.length, 0);
  const joined = new Uint8Array(total);
  let at = 0;
  for (const part of parts) {
    joined.set(part, at);
    at += part.length;
  }
  return { offsetBytes: request.offsetBytes, blockIndexes, compressed: zstdCompress(joined) };
}

/** Checks a request from the wire before the source reads anything for it. */
export function checkRequest(request: ChunkRequest, deviceBytes: number): void {
  const { offsetBytes, lengthBytes, blockBytes } = request;
  const valid = Number.isSafeInteger(offsetBytes) && Number.isSafeInteger(lengthBytes) &&
    Number.isSafeInteger(blockBytes) && blockBytes >= 512 && blockBytes % 512 === 0 &&
    lengthBytes > 0 && lengthBytes <= syncChunkBytes && offsetBytes >= 0 &&
    offsetBytes + lengthBytes <= deviceBytes &&
    offsetBytes % blockBytes === 0 && blockCount(lengthBytes, blockBytes) <= chunkBlocksMax &&
    request.digests.length === blockCount(lengthBytes, blockBytes);
  if (!valid) {
    throw new MarsError("protocol", `sync request [${offsetBytes}, +${lengthBytes}) in blocks ` +
      `of ${blockBytes} does not fit a device of ${deviceBytes} bytes`);
  }
}

/** A run of adjacent differing blocks to write: where, and its bytes. */
export interface BlockPatch {
  readonly offsetBytes: number;
  readonly data: Uint8Array;
}

/** The target side: checks a reply against its request and turns it into writes. */
export function patchesOf(request: ChunkRequest, reply: ChunkReply): BlockPatch[] {
  const blockBytes = request.blockBytes;
  if (reply.offsetBytes !== request.offsetBytes) {
    throw new MarsError("protocol", `sync reply for offset ${reply.offsetBytes}, ` +
      `expected ${request.offsetBytes}`);
  }
  const count = blockCount(request.lengthBytes, blockBytes);
  let expectedBytes = 0;
  let previous = -1;
  for (const index of reply.blockIndexes) {
    if (!Number.isSafeInteger(index) || index <= previous || index >= count) {
      throw new MarsError("protocol", "sync reply block indexes are not ascending in range");
    }
    previous = index;
    expectedBytes += Math.min(blockBytes, request.lengthBytes - index * blockBytes);
  }
  if (reply.blockIndexes.length === 0) return [];
  const joined = zstdDecompress(reply.compressed);
  if (joined.length !== expectedBytes) {
    throw new MarsError("protocol", `sync reply carries ${joined.length} bytes, ` +
      `its blocks need ${expectedBytes}`);
  }
  // Adjacent blocks become one write: fewer requests in flight, larger transfers.
  const patches: BlockPatch[] = [];
  let at = 0;
  let runStart = 0;
  let runBlocks = 0;
  const closeRun = () => {
    const offsetBytes = request.offsetBytes + runStart * blockBytes;
    const lengthBytes =
      Math.min(runBlocks * blockBytes, request.lengthBytes - runStart * blockBytes);
    patches.push({ offsetBytes, data: joined.subarray(at, at + lengthBytes) });
    at += lengthBytes;
  };
  for (const index of reply.blockIndexes) {
    if (runBlocks > 0 && index === runStart + runBlocks) {
      runBlocks++;
      continue;
    }
    if (runBlocks > 0) closeRun();
    runStart = index;
    runBlocks = 1;
  }
  closeRun();
  assert(at === joined.length, "the runs cover every carried byte");
  return patches;
}

/** Page-aligned chunk buffers one engine keeps (64 MiB): a sync window and a source's worth. */
export const chunkBuffersAlignedMax = 64;
/** Ordinary chunk buffers kept for reuse beyond the aligned ones. */
const plainBuffersFreeMax = 8;

/**
 * Where chunk buffers come from, shared by an engine's syncs: page-aligned ones, which the io
 * engine reads into without a bounce copy (measured: the copy was a third of an identical
 * sync's CPU), up to `alignedMax`; beyond it ordinary arrays. Aligned memory is never freed,
 * so it is only ever reused.
 */
export class ChunkBufferPool {
  private readonly alignedFree: Uint8Array[] = [];
  private readonly plainFree: Uint8Array[] = [];
  private readonly aligned = new WeakSet<ArrayBufferLike>();
  private alignedCount = 0;

  constructor(
    readonly chunkBytes: number,
    private readonly allocate?: (sizeBytes: number) => Uint8Array,
    private readonly alignedMax = chunkBuffersAlignedMax,
  ) {}

  take(): Uint8Array {
    const reused = this.alignedFree.pop() ?? this.plainFree.pop();
    if (reused) return reused;
    if (this.allocate && this.alignedCount < this.alignedMax) {
      const buffer = this.allocate(this.chunkBytes);
      assert(buffer.length === this.chunkBytes, "an aligned buffer holds one chunk");
      this.alignedCount++;
      this.aligned.add(buffer.buffer);
      return buffer;
    }
    return new Uint8Array(this.chunkBytes);
  }

  /** Gives back a whole buffer `take` returned. */
  release(buffer: Uint8Array): void {
    assert(buffer.length === this.chunkBytes, "a whole chunk buffer comes back");
    if (this.aligned.has(buffer.buffer)) this.alignedFree.push(buffer);
    else if (this.plainFree.length < plainBuffersFreeMax) this.plainFree.push(buffer);
  }
}

/**
 * Chunk buffers one side of one sync uses: at most `buffersMax` at once, reused (a fresh 1 MiB
 * array per chunk costs its page faults on every read), from a pool shared with other syncs.
 */
export class ChunkBuffers {
  private taken = 0;

  constructor(
    private readonly chunkBytes: number, private readonly buffersMax: number,
    private readonly pool = new ChunkBufferPool(chunkBytes),
  ) {
    assert(pool.chunkBytes >= chunkBytes, "the pool's buffers hold a chunk");
  }

  take(lengthBytes: number): Uint8Array {
    assert(lengthBytes <= this.chunkBytes, "a chunk fits its buffer");
    assert(this.taken < this.buffersMax, "chunk buffers in use stay within their limit");
    this.taken++;
    return this.pool.take().subarray(0, lengthBytes);
  }

  release(buffer: Uint8Array): void {
    assert(this.taken > 0, "release only a taken buffer");
    this.taken--;
    this.pool.release(new Uint8Array(buffer.buffer, buffer.byteOffset, this.pool.chunkBytes));
  }
}
