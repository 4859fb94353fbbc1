/** A replica that discards its log keeps the logfiles it wrote itself aside, never deleted. */
import { assert } from "../lib/assert.ts";
import { parseLogfileName } from "../log/position.ts";
import type { Storage } from "../platform/types.ts";

/** Prefix of the directory (inside the resource's directory) such logfiles go to. */
export const setAsidePrefix = "split-brain-";

/** The set-aside directory's name for a repair that began at wall-clock `nowMs`. */
export function setAsideName(nowMs: number): string {
  assert(Number.isFinite(nowMs) && nowMs >= 0, "a wall-clock time");
  const stamp = new Date(Math.floor(nowMs)).toISOString().replace(/[:.]/g, "-");
  return `${setAsidePrefix}${stamp}`;
}

/**
 * Moves every logfile of `directory` that `host` wrote itself (as primary) into
 * `directory/split-brain-TIME/`, durably; returns that directory, or undefined when there was
 * none. These are the writes a split brain's loser made that may exist nowhere else: an
 * operator can still inspect them (`mars log dump`) or replay them elsewhere. Copies of other
 * hosts' logfiles are not kept (their origin keeps them).
 */
export async function setAsideOwnLogfiles(
  storage: Storage, directory: string, host: string, nowMs: number,
): Promise<{ readonly path: string; readonly moved: number } | undefined> {
  const names = (await storage.files.list(directory))
    .filter((name) => parseLogfileName(name)?.origin === host);
  if (names.length === 0) return undefined;
  const path = `${directory}/${setAsideName(nowMs)}`;
  await storage.files.makeDirectory(path);
  for (const name of names) await storage.files.rename(`${directory}/${name}`, `${path}/${name}`);
  await storage.files.syncDirectory(path);
  await storage.files.syncDirectory(directory);
  return { path, moved: names.length };
}
