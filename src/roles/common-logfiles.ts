/** A targeted repair keeps the logfiles of the shared history, cut at the split point. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { parseLogfileName, type LogPosition } from "../log/position.ts";
import type { IoResult, Storage } from "../platform/types.ts";
import { readExactly } from "../replication/record-cursor.ts";

/** Bytes moved per read and write while a kept-aside logfile's shared part is copied back. */
export const commonCopyPieceBytes = 1024 * 1024;

/**
 * Keeps, in `directory`, one logfile per sequence from `start` to the split point, the last one
 * cut at the split point's offset. Own logfiles were moved to `asideDirectory` already: their
 * shared part is copied back. These copies are what the fetcher checks the winner's history
 * against: the winner's next logfile must name their chain digest, or the fetch stops as a
 * split brain (the two histories differ before the split point, so the plan is void). Returns
 * the names kept; the caller deletes every other logfile.
 */
export async function keepCommonLogfiles(
  storage: Storage, directory: string, asideDirectory: string | undefined,
  start: LogPosition, splitPoint: LogPosition,
): Promise<Set<string>> {
  assert(start.sequence <= splitPoint.sequence, "replay restarts at or before the split");
  const here = await storage.files.list(directory);
  const aside = asideDirectory ? await storage.files.list(asideDirectory) : [];
  const kept = new Set<string>();
  for (let sequence = start.sequence; sequence <= splitPoint.sequence; sequence++) {
    const cut = sequence === splitPoint.sequence ? splitPoint.offsetBytes : undefined;
    const local = here.filter((name) => parseLogfileName(name)?.sequence === sequence);
    const moved = aside.filter((name) => parseLogfileName(name)?.sequence === sequence);
    if (local.length + moved.length !== 1) {
      throw new MarsError("split-brain", `${directory}: ${local.length + moved.length} ` +
        `logfiles numbered ${sequence} before the split point`);
    }
    if (local.length === 1) {
      await cutFile(storage, `${directory}/${local[0]!}`, cut);
      kept.add(local[0]!);
    } else {
      await copyPrefix(storage, `${asideDirectory}/${moved[0]!}`, `${directory}/${moved[0]!}`,
        cut);
      kept.add(moved[0]!);
    }
  }
  await storage.files.syncDirectory(directory);
  return kept;
}

async function cutFile(storage: Storage, path: string, cut: number | undefined): Promise<void> {
  if (cut === undefined) return;
  const fd = await storage.files.open(path, {});
  try {
    if ((await storage.files.sizeOf(fd)) <= cut) return;
    await storage.files.truncate(fd, cut);
    const [result] = await storage.io.submit([{ kind: "fsync", fd, dataOnly: false }]);
    checkResult(result, `fsync ${path}`);
  } finally {
    await storage.files.close(fd);
  }
}

async function copyPrefix(
  storage: Storage, fromPath: string, toPath: string, cut: number | undefined,
): Promise<void> {
  const from = await storage.files.open(fromPath, { readOnly: true });
  const to = await storage.files.open(toPath, { create: true, exclusive: true });
  try {
    const size = await storage.files.sizeOf(from);
    const lengthBytes = Math.min(size, cut ?? size);
    for (let offset = 0; offset < lengthBytes; offset += commonCopyPieceBytes) {
      const piece = new Uint8Array(Math.min(commonCopyPieceBytes, lengthBytes - offset));
      await readExactly(storage, from, fromPath, offset, piece);
      const [result] = await storage.io.submit([{ kind: "write", fd: to, offset, buffer: piece }]);
      checkResult(result, `write ${toPath} at ${offset}`, piece.length);
    }
    const [synced] = await storage.io.submit([{ kind: "fsync", fd: to, dataOnly: false }]);
    checkResult(synced, `fsync ${toPath}`);
  } finally {
    await storage.files.close(from);
    await storage.files.close(to);
  }
}

function checkResult(result: IoResult | undefined, what: string, bytes?: number): void {
  if (!result) throw new MarsError("io", `${what}: no result`);
  if (!result.ok) throw new MarsError("io", `${what}: ${result.message}`);
  if (bytes !== undefined && result.bytes !== bytes) {
    throw new MarsError("io", `${what}: ${result.bytes} of ${bytes} bytes`);
  }
}
