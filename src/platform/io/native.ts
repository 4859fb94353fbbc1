/** The libc calls the io engines need (syscall, mmap, eventfd), bound once through bun:ffi. */
// x86_64 Linux only: the io_uring syscall numbers and the mmap constants below are that ABI's.
import { dlopen, FFIType, read } from "bun:ffi";
import { constants as osConstants } from "node:os";

const libc = dlopen("libc.so.6", {
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
  close: { args: [FFIType.i32], returns: FFIType.i32 },
  fallocate: { args: [FFIType.i32, FFIType.i32, FFIType.i64, FFIType.i64], returns: FFIType.i32 },
  __errno_location: { args: [], returns: FFIType.ptr },
  strerror: { args: [FFIType.i32], returns: FFIType.cstring },
});

export const systemCall = {
  ioUringSetup: 425,
  ioUringEnter: 426,
  ioUringRegister: 427,
} as const;

const protectRead = 0x1;
const protectWrite = 0x2;
const mapSharedFlag = 0x01;
const mapPrivate = 0x02;
const mapAnonymous = 0x20;
const mapPopulate = 0x08000;
const eventfdCloseOnExec = 0o2000000;
const eventfdNonBlocking = 0o4000;

/** A failed libc call: the errno number and its name ("EINVAL"). */
export interface NativeFailure {
  readonly errno: number;
  readonly name: string;
  readonly message: string;
}

/** Number → name; where two names share a number (EAGAIN, EWOULDBLOCK) the first listed wins. */
const errnoNames = new Map<number, string>();
for (const [name, value] of Object.entries(osConstants.errno)) {
  if (!errnoNames.has(value)) errnoNames.set(value, name);
}

export function errnoName(errno: number): string {
  return errnoNames.get(errno) ?? `E${errno}`;
}

export function errnoMessage(errno: number): string {
  return String(libc.symbols.strerror(errno));
}

export function failure(errno: number): NativeFailure {
  return { errno, name: errnoName(errno), message: errnoMessage(errno) };
}

/** The calling thread's errno, read right after a failed call. */
export function lastErrno(): number {
  const location = libc.symbols.__errno_location();
  return location === null ? 0 : read.i32(location, 0);
}

/** syscall(number, ...) with up to six integer arguments; negative errno on failure. */
export function callSystem(number: number, ...args: number[]): number {
  const [a = 0, b = 0, c = 0, d = 0, e = 0, f = 0] = args;
  const result = Number(libc.symbols.syscall(number, a, b, c, d, e, f));
  return result < 0 ? -lastErrno() : result;
}

/** Maps `sizeBytes` of a file (an io_uring fd) shared with the kernel; errno on failure. */
export function mapSharedFile(
  fd: number, offset: number, sizeBytes: number,
): number | NativeFailure {
  const flags = mapSharedFlag | mapPopulate;
  const address = Number(
    libc.symbols.mmap(0, sizeBytes, protectRead | protectWrite, flags, fd, offset),
  );
  return address < 0 ? failure(lastErrno()) : address;
}

/** Anonymous private memory: page-aligned, zeroed, never moved by the garbage collector. */
export function mapAnonymousMemory(sizeBytes: number): number | NativeFailure {
  const flags = mapPrivate | mapAnonymous;
  const address = Number(
    libc.symbols.mmap(0, sizeBytes, protectRead | protectWrite, flags, -1, 0),
  );
  return address < 0 ? failure(lastErrno()) : address;
}

export function unmap(address: number, sizeBytes: number): void {
  libc.symbols.munmap(address, sizeBytes);
}

/** A non-blocking, close-on-exec eventfd; errno on failure. */
export function createEventFd(): number | NativeFailure {
  const fd = libc.symbols.eventfd(0, eventfdCloseOnExec | eventfdNonBlocking);
  return fd < 0 ? failure(lastErrno()) : fd;
}

/** fallocate(2) on the calling thread (the portable engine); the failure, if any. */
export function allocateRange(
  fd: number, modeBits: number, offset: number, lengthBytes: number,
): NativeFailure | undefined {
  const result = libc.symbols.fallocate(fd, modeBits, offset, lengthBytes);
  return result < 0 ? failure(lastErrno()) : undefined;
}

export function closeDescriptor(fd: number): void {
  libc.symbols.close(fd);
}
