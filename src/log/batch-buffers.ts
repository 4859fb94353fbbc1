/** The log writer's batch buffers: reused, and aligned when the io engine can (no bounce copy). */
import { assert } from "../lib/assert.ts";
import type { IoEngine } from "../platform/types.ts";

/** O_DIRECT batch writes cover whole blocks of this size: file offset, length and memory. */
export const directBlockBytes = 4096;
/**
 * Batch buffers kept for reuse once their batch is durable; more are allocated while many
 * sealed batches wait, and dropped afterwards.
 */
export const batchBuffersSpareMax = 2;
/**
 * Batch buffers taken from the io engine's aligned memory (written without a bounce copy).
 * They live as long as the process, so there are at most this many; others are heap memory.
 */
export const batchBuffersAlignedMax = 4;
/** Zeroes written per I/O while preallocating. */
export const preallocateWriteBytesMax = 1024 * 1024;

export function roundUp(value: number, multiple: number): number {
  return Math.ceil(value / multiple) * multiple;
}

/**
 * A batch buffer holds, in the direct layout, the logfile's last partial block first (it is
 * rewritten with the same bytes), then the batch's records, then zeroes to the block end.
 */
/**
 * Aligned memory is never unmapped, so the aligned batch buffers of writers that closed (and
 * the preallocation zeroes) are kept per io engine, by size, for the writers that follow: a
 * process that opens many logs over its life maps them once, not once per writer.
 */
const leftAligned = new WeakMap<IoEngine, Map<number, Uint8Array[]>>();
const sharedZeroes = new WeakMap<IoEngine, Uint8Array>();

export class BatchBuffers {
  private readonly spare: Uint8Array[] = [];
  private readonly aligned = new Set<Uint8Array>();
  private closed = false;

  constructor(
    private readonly io: IoEngine,
    /** Records per batch before it is sealed (`batchBytesMax`). */
    private readonly batchBytesMax: number,
  ) {}

  /** Room for a batch of up to `batchBytesMax` record bytes plus a head and a padded tail. */
  get standardBytes(): number {
    return this.batchBytesMax + 2 * directBlockBytes;
  }

  /** A buffer for a batch whose first record takes `recordBytes`. */
  take(recordBytes: number): Uint8Array {
    const neededBytes = recordBytes + 2 * directBlockBytes;
    if (neededBytes > this.standardBytes) return new Uint8Array(neededBytes);
    const spare = this.spare.pop();
    if (spare !== undefined) return spare;
    if (this.io.allocateBuffer === undefined || this.aligned.size >= batchBuffersAlignedMax) {
      return new Uint8Array(this.standardBytes); // the io engine bounces it
    }
    const buffer = this.leftOver().pop() ?? this.io.allocateBuffer(this.standardBytes);
    this.aligned.add(buffer);
    return buffer;
  }

  /** A durable batch's buffer may be reused: nothing refers to it any more. */
  give(buffer: Uint8Array): void {
    if (buffer.length !== this.standardBytes) return;
    if (this.closed) {
      if (this.aligned.delete(buffer)) this.leftOver().push(buffer);
      return;
    }
    // Aligned ones are never freed, so each is kept; they are taken first.
    if (this.aligned.has(buffer)) this.spare.push(buffer);
    else if (this.spare.length < batchBuffersSpareMax) this.spare.unshift(buffer);
    assert(this.spare.length <= batchBuffersSpareMax + batchBuffersAlignedMax,
      "spare batch buffers within their limit");
  }

  /** Zeroes for preallocation, aligned when the engine offers it (fit for O_DIRECT). */
  zeroes(): Uint8Array {
    let zeroes = sharedZeroes.get(this.io);
    if (zeroes === undefined) {
      // Only ever written from, never into, so every writer of the engine shares it.
      zeroes = this.io.allocateBuffer?.(preallocateWriteBytesMax) ??
        new Uint8Array(preallocateWriteBytesMax);
      sharedZeroes.set(this.io, zeroes);
    }
    return zeroes;
  }

  /**
   * The writer closed: its spare aligned buffers go to the writers that follow, and so do those
   * given back later (a batch still being committed, or one whose write failed).
   */
  close(): void {
    this.closed = true;
    for (const buffer of this.spare) {
      if (this.aligned.delete(buffer)) this.leftOver().push(buffer);
    }
    this.spare.length = 0;
  }

  private leftOver(): Uint8Array[] {
    let bySize = leftAligned.get(this.io);
    if (bySize === undefined) leftAligned.set(this.io, (bySize = new Map()));
    let list = bySize.get(this.standardBytes);
    if (list === undefined) bySize.set(this.standardBytes, (list = []));
    return list;
  }
}
