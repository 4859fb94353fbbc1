/** Advisory exclusive locks with flock(2): released by the kernel when the process dies. */
import * as fs from "node:fs";
import { errnoError } from "./errno.ts";
import { describeErrno, lastErrno, libc } from "./libc.ts";
import type { FileLocks, HeldLock } from "./types.ts";

const lockExclusive = 2;
const lockNonBlocking = 4;
const wouldBlock = 11;


/** Tries to lock an open descriptor; false when someone else holds the lock. */
export function tryLockDescriptor(fd: number): boolean {
  if (libc.symbols.flock(fd, lockExclusive | lockNonBlocking) === 0) return true;
  const errno = lastErrno();
  if (errno === wouldBlock) return false;
  throw new Error(`flock fd ${fd}: ${describeErrno(errno)}`);
}

export const systemLocks: FileLocks = {
  async tryLock(path: string): Promise<HeldLock | undefined> {
    let fd: number;
    try {
      fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT | 0o2000000, 0o600);
    } catch (error) {
      throw errnoError(`open lock ${path}`, error);
    }
    if (!tryLockDescriptor(fd)) {
      fs.closeSync(fd);
      return undefined;
    }
    return { release: async () => fs.closeSync(fd) };
  },
};
