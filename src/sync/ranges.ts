/** Byte ranges a sync copies: merged, block-aligned, bounded, and cut into chunk-sized pieces. */
import { assert } from "../lib/assert.ts";

/**
 * The most ranges one targeted sync copies (a split brain's repair). More scattered writes than
 * this fall back to the full fast sync: the list lives in the cursor file and in the metadata.
 */
export const syncRangesMax = 4096;

export interface ByteRange {
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/**
 * Sorted, non-overlapping, non-touching ranges covering every byte of `ranges`, each widened
 * outwards to whole `blockBytes` blocks and cut at `sizeBytes`. Empty ranges vanish.
 */
export function mergeRanges(
  ranges: Iterable<ByteRange>, blockBytes: number, sizeBytes: number,
): ByteRange[] {
  assert(blockBytes >= 512 && blockBytes % 512 === 0, "ranges align to whole sectors");
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, "a device size");
  const aligned: { start: number; end: number }[] = [];
  for (const range of ranges) {
    assert(range.offsetBytes >= 0 && range.lengthBytes >= 0, "a range lies on the device");
    const end = Math.min(sizeBytes, range.offsetBytes + range.lengthBytes);
    const start = Math.floor(range.offsetBytes / blockBytes) * blockBytes;
    if (end <= range.offsetBytes || start >= sizeBytes) continue;
    aligned.push({ start, end: Math.min(sizeBytes, Math.ceil(end / blockBytes) * blockBytes) });
  }
  aligned.sort((left, right) => left.start - right.start);
  const merged: { start: number; end: number }[] = [];
  for (const range of aligned) {
    const last = merged[merged.length - 1];
    if (last && range.start <= last.end) last.end = Math.max(last.end, range.end);
    else merged.push({ ...range });
  }
  return merged.map((range) => ({
    offsetBytes: range.start, lengthBytes: range.end - range.start,
  }));
}

export function rangeBytes(ranges: readonly ByteRange[]): number {
  return ranges.reduce((sum, range) => sum + range.lengthBytes, 0);
}

/** One piece of work: `listOffsetBytes` counts the bytes of the range list before it. */
export interface RangePiece {
  readonly listOffsetBytes: number;
  readonly offsetBytes: number;
  readonly lengthBytes: number;
}

/**
 * The pieces of `ranges` from list offset `fromListBytes` on, each within one chunk-aligned
 * `chunkBytes` window of the device (so a piece is at most one sync request).
 */
export function* rangePieces(
  ranges: readonly ByteRange[], chunkBytes: number, fromListBytes: number,
): Generator<RangePiece> {
  assert(chunkBytes > 0, "chunks have a size");
  let listOffsetBytes = 0;
  for (const range of ranges) {
    let offsetBytes = range.offsetBytes;
    const endBytes = range.offsetBytes + range.lengthBytes;
    while (offsetBytes < endBytes) {
      const chunkEnd = (Math.floor(offsetBytes / chunkBytes) + 1) * chunkBytes;
      const lengthBytes = Math.min(endBytes, chunkEnd) - offsetBytes;
      if (listOffsetBytes >= fromListBytes) yield { listOffsetBytes, offsetBytes, lengthBytes };
      else assert(listOffsetBytes + lengthBytes <= fromListBytes, "resume at a piece boundary");
      listOffsetBytes += lengthBytes;
      offsetBytes += lengthBytes;
    }
  }
}

/** Checks a list read from a file or the metadata: sorted, disjoint, within the device. */
export function rangesValid(ranges: readonly ByteRange[], sizeBytes: number): boolean {
  if (ranges.length > syncRangesMax) return false;
  let end = 0;
  for (const range of ranges) {
    if (!Number.isSafeInteger(range.offsetBytes) || !Number.isSafeInteger(range.lengthBytes)) {
      return false;
    }
    if (range.offsetBytes < end || range.lengthBytes <= 0) return false;
    end = range.offsetBytes + range.lengthBytes;
  }
  return end <= sizeBytes;
}
