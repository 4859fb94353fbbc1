/** Crash-safe small files: write a temporary, fsync it, rename it over, fsync the directory. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type { Storage } from "../platform/types.ts";

/** Metadata files are small; a bigger one is a bug or an attack, not something to load. */
export const metadataFileBytesMax = 256 * 1024 * 1024;

function parentOf(path: string): string {
  const slash = path.lastIndexOf("/");
  return slash <= 0 ? "/" : path.slice(0, slash);
}

/** Replaces `path` with `bytes` atomically: after a crash it holds the old or the new content. */
export async function writeFileAtomic(
  storage: Storage, path: string, bytes: Uint8Array,
): Promise<void> {
  assert(bytes.length <= metadataFileBytesMax, "a metadata file stays within its bound");
  const temporary = `${path}.tmp`;
  const fd = await storage.files.open(temporary, { create: true });
  try {
    await storage.files.truncate(fd, 0);
    const results = await storage.io.submit([
      { kind: "write", fd, offset: 0, buffer: bytes },
      { kind: "fsync", fd, dataOnly: false },
    ], { ordered: true });
    for (const result of results) {
      if (!result.ok) throw new MarsError("io", `write ${temporary}: ${result.message}`);
    }
  } finally {
    await storage.files.close(fd);
  }
  await storage.files.rename(temporary, path);
  await storage.files.syncDirectory(parentOf(path));
}

/** The whole content of `path`, or undefined when it does not exist. */
export async function readFileBytes(
  storage: Storage, path: string,
): Promise<Uint8Array | undefined> {
  const status = await storage.files.status(path);
  if (!status) return undefined;
  if (status.sizeBytes > metadataFileBytesMax) {
    throw new MarsError("io", `${path} is ${status.sizeBytes} bytes, more than a metadata file`);
  }
  const fd = await storage.files.open(path, { readOnly: true });
  try {
    const buffer = new Uint8Array(status.sizeBytes);
    let offset = 0;
    while (offset < buffer.length) {
      const [result] = await storage.io.submit([
        { kind: "read", fd, offset, buffer: buffer.subarray(offset) },
      ]);
      if (!result || !result.ok) throw new MarsError("io", `read ${path}: ${result?.message}`);
      if (result.bytes === 0) break;
      offset += result.bytes;
    }
    return buffer.subarray(0, offset);
  } finally {
    await storage.files.close(fd);
  }
}
