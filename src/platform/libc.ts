/** Every libc call the runtime does not offer, bound once through bun:ffi (x86_64 Linux). */
// One dlopen for the process: each binding compiles its trampolines when loaded, and the
// platform files that need libc (io engines, netlink, the kernel device, locks, sd_notify)
// share this table instead of opening libc for themselves.
import { dlopen, FFIType, read } from "bun:ffi";

const seekEnd = 2;

export const libc = dlopen("libc.so.6", {
  lseek: { args: [FFIType.i32, FFIType.i64, FFIType.i32], returns: FFIType.i64_fast },
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  // io engines
  syscall: {
    args: [
      FFIType.i64, FFIType.i64, FFIType.i64, FFIType.i64,
      FFIType.i64, FFIType.i64, FFIType.i64,
    ],
    returns: FFIType.i64_fast,
  },
  mmap: {
    args: [FFIType.u64, FFIType.u64, FFIType.i32, FFIType.i32, FFIType.i32, FFIType.i64],
    returns: FFIType.i64_fast,
  },
  munmap: { args: [FFIType.u64, FFIType.u64], returns: FFIType.i32 },
  eventfd: { args: [FFIType.u32, FFIType.i32], returns: FFIType.i32 },
  fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
  // sockets: netlink, the kernel device's socketpair, sd_notify
  socket: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
  socketpair: { args: [FFIType.i32, FFIType.i32, FFIType.i32, FFIType.ptr], returns: FFIType.i32 },
  send: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
  recv: { args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32], returns: FFIType.i64_fast },
  sendto: {
    args: [FFIType.i32, FFIType.ptr, FFIType.u64, FFIType.i32, FFIType.ptr, FFIType.u32],
    returns: FFIType.i64_fast,
  },
  // the process and its files
  prctl: {
    args: [FFIType.i32, FFIType.u64, FFIType.u64, FFIType.u64, FFIType.u64], returns: FFIType.i32,
  },
  mlockall: { args: [FFIType.i32], returns: FFIType.i32 },
  flock: { args: [FFIType.i32, FFIType.i32], returns: FFIType.i32 },
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
