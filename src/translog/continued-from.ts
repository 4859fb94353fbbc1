/** Where this host's own history continues the log: the split point, durable across restarts. */
import type { Storage } from "../platform/types.ts";
import type { LogPosition } from "../log/position.ts";
import { listLogfiles } from "../log/verify.ts";
import { readFileBytes, writeFileAtomic } from "../store/atomic-file.ts";
import type { RecoveryResult } from "./recovery.ts";

export const continuedFromFileName = "continued-from";
/** The file holds three small numbers; anything larger is not ours. */
const persistedBytesMax = 4096;

interface Persisted {
  readonly sequence: number;
  readonly offsetBytes: number;
  /** The first own logfile of the run that continues from there. */
  readonly firstOwn: number;
}

/**
 * Decided when a writer starts after recovery (before its new logfile exists). When the log's
 * last logfile is another host's, this run continues that history at the recovered end: that is
 * the split point, persisted with the run's first own logfile. When the last logfile is this
 * host's own, the run goes on after a restart: the persisted split point stays valid while
 * every logfile from that first own one is still this host's (retention may have deleted the
 * logfile before it, so it is not derived from the files). Without a valid persisted value, the
 * recovered end (the behaviour of a history this host started). Undefined: an empty log.
 */
export async function resolveContinuedFrom(
  storage: Storage, directory: string, host: string, recovery: RecoveryResult,
): Promise<LogPosition | undefined> {
  const end = recovery.position;
  if (!end) {
    // A new history (created, or invalidated and not yet fetched): no split point of an earlier
    // run may be taken for one of this history's later runs.
    await storage.files.remove(`${directory}/${continuedFromFileName}`);
    return undefined;
  }
  const listed = await listLogfiles(storage, directory);
  const last = listed.at(-1);
  if (last && last.origin === host) {
    const persisted = await readPersisted(storage, directory);
    if (persisted && persisted.firstOwn <= last.sequence &&
      persisted.sequence < persisted.firstOwn && listed.every((entry) =>
        entry.sequence < persisted.firstOwn || entry.origin === host)) {
      return { sequence: persisted.sequence, offsetBytes: persisted.offsetBytes };
    }
    return end;
  }
  await writePersisted(storage, directory, {
    sequence: end.sequence, offsetBytes: end.offsetBytes,
    firstOwn: recovery.start.logfileSequence,
  });
  return end;
}

async function readPersisted(storage: Storage, directory: string) {
  const path = `${directory}/${continuedFromFileName}`;
  try {
    const bytes = await readFileBytes(storage, path);
    if (!bytes || bytes.length === 0 || bytes.length > persistedBytesMax) return undefined;
    const value = JSON.parse(new TextDecoder().decode(bytes)) as Partial<Persisted>;
    const valid = [value.sequence, value.offsetBytes, value.firstOwn]
      .every((field) => Number.isSafeInteger(field) && (field as number) >= 0);
    return valid ? value as Persisted : undefined;
  } catch {
    return undefined; // unreadable: treated as absent (the recovered end is used)
  }
}

/** Crash-safe: a crash leaves the old or the new split point, never a torn one. */
async function writePersisted(storage: Storage, directory: string, value: Persisted) {
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  await writeFileAtomic(storage, `${directory}/${continuedFromFileName}`, bytes);
}
