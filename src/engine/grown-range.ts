/** Grown space reads as zeroes on every member: the primary logs write-zeroes before exporting. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { BlockDevice } from "../block/types.ts";
import { recordRangeBytesMax } from "../log/format.ts";
import { readFileBytes, writeFileAtomic } from "../store/atomic-file.ts";
import type { Storage } from "../platform/types.ts";

/**
 * In the resource's directory: how far this host's export reached while it was primary (its
 * own period only). Up to there the log defines the device: the range a resize added was
 * zeroed in the log before the export served it, so clients may have written anywhere below.
 */
export const exportedSizeFileName = "exported-size";

const exportedSizeFormat = 1;

export interface ByteRange {
  readonly fromBytes: number;
  readonly toBytes: number;
}

/**
 * What a primary attaching with the resource's size `sizeBytes` must zero before it exports:
 * the range above what its export reached (`exportedBytes`, persisted), which no client
 * can have written (the bound moves only after the zeroes are logged). Nothing when nothing
 * was persisted (this host's first period as primary: the size is the log's start, or the
 * history it continues defined it) or when the export already reached that far.
 */
export function rangeToZero(
  exportedBytes: number | undefined, sizeBytes: number,
): ByteRange | undefined {
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, "a size is a safe integer");
  if (exportedBytes === undefined || exportedBytes >= sizeBytes) return undefined;
  return { fromBytes: exportedBytes, toBytes: sizeBytes };
}

/** Logs write-zeroes over `range` (pieces within a record's limit) and waits until durable. */
export async function zeroRange(device: BlockDevice, range: ByteRange): Promise<void> {
  assert(range.fromBytes < range.toBytes, "a range to zero is not empty");
  assert(range.toBytes <= device.sizeBytes, "the device covers the range to zero");
  const pieces: Promise<void>[] = [];
  for (let offset = range.fromBytes; offset < range.toBytes; offset += recordRangeBytesMax) {
    const lengthBytes = Math.min(recordRangeBytesMax, range.toBytes - offset);
    // noHole false: the writeback (and a replaying secondary) may punch or fallocate.
    pieces.push(device.writeZeroes(offset, lengthBytes, { fua: false, noHole: false }));
  }
  await Promise.all(pieces);
  await device.flush();
}

/** What this host's export reached as primary, or undefined when not recorded. */
export async function readExportedSize(
  storage: Storage, directory: string,
): Promise<number | undefined> {
  const path = `${directory}/${exportedSizeFileName}`;
  const bytes = await readFileBytes(storage, path);
  if (bytes === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(new TextDecoder().decode(bytes));
  } catch {
    parsed = undefined;
  }
  const fields = parsed as { format?: unknown; exportedBytes?: unknown } | undefined;
  const exportedBytes = fields?.exportedBytes;
  if (fields?.format !== exportedSizeFormat || typeof exportedBytes !== "number" ||
    !Number.isSafeInteger(exportedBytes) || exportedBytes < 0) {
    throw new MarsError("io", `${path} is damaged (remove it only if no client wrote beyond ` +
      "the resource's size before its last growth)");
  }
  return exportedBytes;
}

/** Records that this host's export reaches `exportedBytes` (durable before it serves it). */
export async function writeExportedSize(
  storage: Storage, directory: string, exportedBytes: number,
): Promise<void> {
  assert(Number.isSafeInteger(exportedBytes) && exportedBytes >= 0, "a size is a safe integer");
  const text = JSON.stringify({ format: exportedSizeFormat, exportedBytes });
  await writeFileAtomic(storage, `${directory}/${exportedSizeFileName}`,
    new TextEncoder().encode(`${text}\n`));
}

/**
 * Forgets what this host exported: as a secondary it replays another primary's history,
 * which may have grown and been written beyond, so its own old bound must not be zeroed from.
 */
export async function forgetExportedSize(storage: Storage, directory: string): Promise<void> {
  const path = `${directory}/${exportedSizeFileName}`;
  if (!await storage.files.status(path)) return;
  await storage.files.remove(path);
  await storage.files.syncDirectory(directory);
}

/**
 * A primary's attach: redoes the zeroing a growth did not finish (the size key says more than
 * the export reached: a crash between the key and the logged zeroes), then records the size.
 */
export async function zeroBeforeExport(
  storage: Storage, directory: string, device: BlockDevice, sizeBytes: number,
): Promise<void> {
  const exportedBytes = await readExportedSize(storage, directory);
  const range = rangeToZero(exportedBytes, sizeBytes);
  if (range) await zeroRange(device, range);
  // A key below what the export reached keeps the higher mark: that range is clients' data.
  const reached = Math.max(exportedBytes ?? 0, sizeBytes);
  if (reached !== exportedBytes) await writeExportedSize(storage, directory, reached);
}
