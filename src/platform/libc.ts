/** The few libc calls the runtime does not offer, bound through bun:ffi (x86_64 Linux). */
import { dlopen, FFIType, read } from "bun:ffi";

const seekEnd = 2;

const libc = dlopen("libc.so.6", {
  lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
});

/** The calling thread's errno, read right after a failed call. */
export function lastErrno(): number {
  const location = libc.symbols.__errno_location();
  return location === null ? 0 : read.i32(location, 0);
}

export function describeErrno(errno: number): string {
  return String(libc.symbols.strerror(errno));
}

/** lseek(fd, 0, SEEK_END): the size of a file or block device. */
export function lseekEnd(fd: number): number {
  const offset = Number(libc.symbols.lseek(fd, 0, seekEnd));
  if (offset < 0) {
    const errno = lastErrno();
    throw new Error(`lseek fd ${fd}: ${describeErrno(errno)}`);
  }
  return offset;
}
