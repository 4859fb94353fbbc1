/** Split-brain repair keeps the loser's logfiles aside (never deleted) before it resyncs. */
import { assert } from "../lib/assert.ts";
import type { Storage } from "../platform/types.ts";

/** Prefix of the directory (inside the resource's directory) a split brain's logfiles go to. */
export const setAsidePrefix = "split-brain-";

/** The set-aside directory's name for a repair that began at wall-clock `nowMs`. */
export function setAsideName(nowMs: number): string {
  assert(Number.isFinite(nowMs) && nowMs >= 0, "a wall-clock time");
  const stamp = new Date(Math.floor(nowMs)).toISOString().replace(/[:.]/g, "-");
  return `${setAsidePrefix}${stamp}`;
}

/**
 * Moves every logfile of `directory` (its own divergent ones and the copies it fetched) into
 * `directory/split-brain-TIME/`, durably, and returns that directory and how many moved. The
 * operator can still inspect them (`mars log dump`) or replay them elsewhere.
 */
export async function setAsideLogfiles(
  storage: Storage, directory: string, nowMs: number,
): Promise<{ readonly path: string; readonly moved: number }> {
  const path = `${directory}/${setAsideName(nowMs)}`;
  const names = (await storage.files.list(directory)).filter((name) => name.startsWith("log-"));
  await storage.files.makeDirectory(path);
  for (const name of names) await storage.files.rename(`${directory}/${name}`, `${path}/${name}`);
  await storage.files.syncDirectory(path);
  await storage.files.syncDirectory(directory);
  return { path, moved: names.length };
}
