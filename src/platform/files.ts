/** The real FileSystem over node:fs: open flags, file and block-device sizes, durable renames. */
import * as fs from "node:fs";
import { promisify } from "node:util";
import type { FileStatus, FileSystem, OpenOptions } from "./types.ts";
import { errnoError } from "./errno.ts";
import { lseekEnd } from "./libc.ts";

/** Not in node's typings; the Linux value. */
const closeOnExecFlag = 0o2000000;

const openAsync = promisify(fs.open);
const closeAsync = promisify(fs.close);
const ftruncateAsync = promisify(fs.ftruncate);
const fsyncAsync = promisify(fs.fsync);

function openFlags(options: OpenOptions): number {
  const constants = fs.constants;
  let flags = options.readOnly ? constants.O_RDONLY : constants.O_RDWR;
  if (options.create) flags |= constants.O_CREAT;
  if (options.exclusive) flags |= constants.O_EXCL;
  if (options.direct) flags |= constants.O_DIRECT;
  return flags | closeOnExecFlag;
}

async function wrap<T>(what: string, action: () => Promise<T>): Promise<T> {
  try {
    return await action();
  } catch (error) {
    throw errnoError(what, error);
  }
}

export const systemFiles: FileSystem = {
  open: (path, options) => wrap(`open ${path}`, () => openAsync(path, openFlags(options), 0o600)),
  close: (fd) => wrap(`close fd ${fd}`, () => closeAsync(fd)),
  sizeOf: (fd) => wrap(`size of fd ${fd}`, async () => sizeOfDescriptor(fd)),
  truncate: (fd, sizeBytes) => wrap(`truncate fd ${fd}`, () => ftruncateAsync(fd, sizeBytes)),
  status: (path) => wrap(`stat ${path}`, () => statusOf(path)),
  list: (directory) =>
    wrap(`list ${directory}`, async () => (await fs.promises.readdir(directory)).sort()),
  makeDirectory: (path) =>
    wrap(`mkdir ${path}`, async () => {
      await fs.promises.mkdir(path, { recursive: true, mode: 0o700 });
    }),
  rename: (fromPath, toPath) =>
    wrap(`rename ${fromPath}`, () => fs.promises.rename(fromPath, toPath)),
  remove: (path) => wrap(`remove ${path}`, () => fs.promises.rm(path, { force: true })),
  removeTree: (path) => wrap(`remove ${path}`,
    () => fs.promises.rm(path, { recursive: true, force: true })),
  syncDirectory: (path) =>
    wrap(`fsync directory ${path}`, async () => {
      const fd = await openAsync(path, fs.constants.O_RDONLY | closeOnExecFlag);
      try {
        await fsyncAsync(fd);
      } finally {
        await closeAsync(fd);
      }
    }),
  space: (path) =>
    wrap(`statfs ${path}`, async () => {
      const found = await fs.promises.statfs(path);
      return {
        freeBytes: Number(found.bavail) * Number(found.bsize),
        totalBytes: Number(found.blocks) * Number(found.bsize),
      };
    }),
};

async function statusOf(path: string): Promise<FileStatus | undefined> {
  const stats = await fs.promises.stat(path).catch((error: { code?: string }) => {
    if (error.code === "ENOENT") return undefined;
    throw error;
  });
  if (!stats) return undefined;
  let sizeBytes = stats.size;
  if (stats.isBlockDevice()) {
    const fd = await openAsync(path, fs.constants.O_RDONLY | closeOnExecFlag);
    try {
      sizeBytes = lseekEnd(fd);
    } finally {
      await closeAsync(fd);
    }
  }
  return {
    sizeBytes,
    isDirectory: stats.isDirectory(),
    isBlockDevice: stats.isBlockDevice(),
    modifiedMs: stats.mtimeMs,
  };
}

/** A block device reports size 0 through fstat; lseek to its end tells the truth. */
function sizeOfDescriptor(fd: number): number {
  const stats = fs.fstatSync(fd);
  return stats.isBlockDevice() ? lseekEnd(fd) : stats.size;
}
