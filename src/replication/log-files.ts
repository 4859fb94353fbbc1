/** A resource's logfiles on this host: which exist, their origins, and their chain digests. */
import { MarsError } from "../lib/errors.ts";
import { decodeLogfileHeader, logfileHeaderBytes } from "../log/format.ts";
import { chainDigest, logfileName, parseLogfileName } from "../log/position.ts";
import { StreamingContentDigest } from "../log/content-digest.ts";
import type { Storage } from "../platform/types.ts";
import { readExactly } from "./record-cursor.ts";

/** Bytes read per I/O while digesting a logfile. */
export const digestReadBytes = 4 * 1024 * 1024;

export interface LocalLogfile {
  readonly sequence: number;
  readonly origin: string;
  readonly path: string;
}

/** Logfiles in `directory` by sequence; two with one sequence are a split brain (an error). */
export async function localLogfiles(
  storage: Storage, directory: string,
): Promise<Map<number, LocalLogfile>> {
  const found = new Map<number, LocalLogfile>();
  const names = (await storage.files.status(directory)) ? await storage.files.list(directory) : [];
  for (const name of names) {
    const parsed = parseLogfileName(name);
    if (!parsed) continue;
    const other = found.get(parsed.sequence);
    if (other) {
      throw new MarsError("split-brain", `${directory}: two logfiles numbered ` +
        `${parsed.sequence} (${other.origin} and ${parsed.origin})`);
    }
    found.set(parsed.sequence, { ...parsed, path: `${directory}/${name}` });
  }
  return found;
}

export function logfilePath(directory: string, sequence: number, origin: string): string {
  return `${directory}/${logfileName(sequence, origin)}`;
}

/**
 * The version-chain digest of the finished logfile at `path` with `lengthBytes` bytes: what the
 * header of the next logfile must name as its previous digest.
 */
export async function chainDigestOfFile(
  storage: Storage, path: string, lengthBytes: number,
): Promise<Uint8Array> {
  const fd = await storage.files.open(path, { readOnly: true });
  try {
    const digest = new StreamingContentDigest();
    let header: Uint8Array | undefined;
    for (let offset = 0; offset < lengthBytes; offset += digestReadBytes) {
      const piece = new Uint8Array(Math.min(digestReadBytes, lengthBytes - offset));
      await readExactly(storage, fd, path, offset, piece);
      header ??= piece.subarray(0, logfileHeaderBytes);
      digest.update(piece);
    }
    const decoded = decodeLogfileHeader(header ?? new Uint8Array(0));
    if (typeof decoded === "string") {
      throw new MarsError("defective-log", `${path}: offset 0: ${decoded}`);
    }
    return chainDigest({
      sequence: decoded.sequence, origin: decoded.origin, lengthBytes,
      contentDigest: digest.finish(path), previousDigest: decoded.previousDigest,
    });
  } finally {
    await storage.files.close(fd);
  }
}
