/** Where a primary's log ended when it stepped down, durable: a restart resumes a handover. */
import { comparePositions, logfileName, type LogPosition } from "../log/position.ts";
import type { Storage } from "../platform/types.ts";
import { readFileBytes, writeFileAtomic } from "../store/atomic-file.ts";

export const closedLogEndFileName = "closed-log-end";

/**
 * The closed log end of `host` for the resource in `directory`, kept across restarts. It is
 * removed before the host exports again (a stale end would let a handover finish short of the
 * log), and it counts only while the logfile it ends is still this host's own logfile here,
 * at least that long: an invalidate or a split-brain repair that discards its history, or
 * retention, make it void.
 */
export class ClosedLogEnds {
  constructor(private readonly storage: Storage, private readonly host: string) {}

  /** Written after the log was closed (the handover waits for it to be published). */
  async write(directory: string, end: LogPosition): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(end));
    await writeFileAtomic(this.storage, `${directory}/${closedLogEndFileName}`, bytes);
  }

  /** Removed (durably) before this host exports the resource again. */
  async remove(directory: string): Promise<void> {
    const path = `${directory}/${closedLogEndFileName}`;
    if (!await this.storage.files.status(path)) return;
    await this.storage.files.remove(path);
    await this.storage.files.syncDirectory(directory);
  }

  /** The persisted end, or undefined when none, unreadable, or no longer backed by its file. */
  async read(directory: string): Promise<LogPosition | undefined> {
    const path = `${directory}/${closedLogEndFileName}`;
    let end: LogPosition;
    try {
      const bytes = await readFileBytes(this.storage, path);
      if (!bytes) return undefined;
      end = JSON.parse(new TextDecoder().decode(bytes)) as LogPosition;
    } catch {
      return undefined; // unreadable: treated as absent (a handover times out, nothing is lost)
    }
    const valid = Number.isSafeInteger(end?.sequence) && end.sequence > 0 &&
      Number.isSafeInteger(end.offsetBytes) && end.offsetBytes >= 0;
    if (!valid) return undefined;
    const logfile = await this.storage.files.status(
      `${directory}/${logfileName(end.sequence, this.host)}`);
    if (!logfile || comparePositions({ sequence: end.sequence, offsetBytes: logfile.sizeBytes },
      end) < 0) return undefined;
    return { sequence: end.sequence, offsetBytes: end.offsetBytes };
  }
}
