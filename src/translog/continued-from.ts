/** Where this host's own history continues the log: the split point, durable across restarts. */
import { MarsError } from "../lib/errors.ts";
import type { Storage } from "../platform/types.ts";
import type { LogPosition } from "../log/position.ts";
import { listLogfiles } from "../log/verify.ts";
import type { RecoveryResult } from "./recovery.ts";

export const continuedFromFileName = "continued-from";

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
  const status = await storage.files.status(path);
  if (!status || status.sizeBytes === 0 || status.sizeBytes > 4096) return undefined;
  const fd = await storage.files.open(path, {});
  try {
    const buffer = new Uint8Array(status.sizeBytes);
    const [result] = await storage.io.submit([{ kind: "read", fd, offset: 0, buffer }]);
    if (!result?.ok) return undefined;
    const value = JSON.parse(new TextDecoder().decode(buffer)) as Partial<Persisted>;
    const valid = [value.sequence, value.offsetBytes, value.firstOwn]
      .every((field) => Number.isSafeInteger(field) && (field as number) >= 0);
    return valid ? value as Persisted : undefined;
  } catch {
    return undefined; // unreadable: treated as absent (the recovered end is used)
  } finally {
    await storage.files.close(fd);
  }
}

/** Written to a temporary file, synced, then renamed: a crash leaves the old or the new. */
async function writePersisted(storage: Storage, directory: string, value: Persisted) {
  const path = `${directory}/${continuedFromFileName}`;
  const temporary = `${path}.tmp`;
  const bytes = new TextEncoder().encode(JSON.stringify(value));
  await storage.files.remove(temporary);
  const fd = await storage.files.open(temporary, { create: true });
  try {
    await storage.files.truncate(fd, 0);
    const results = await storage.io.submit([
      { kind: "write", fd, offset: 0, buffer: bytes },
      { kind: "fsync", fd, dataOnly: false },
    ], { ordered: true });
    if (results.some((result) => !result.ok)) {
      throw new MarsError("io", `${temporary}: writing the split point failed`, {
        details: { file: temporary },
      });
    }
  } finally {
    await storage.files.close(fd);
  }
  await storage.files.rename(temporary, path);
  await storage.files.syncDirectory(directory);
}
