/** The libc calls the io engines need (syscall, mmap, eventfd, fallocate), wrapped for them. */
// x86_64 Linux only: the io_uring syscall numbers and the mmap constants below are that ABI's.
import { constants as osConstants } from "node:os";
import { describeErrno, lastErrno, libc } from "../libc.ts";

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
  return describeErrno(errno);
}

export function failure(errno: number): NativeFailure {
  return { errno, name: errnoName(errno), message: errnoMessage(errno) };
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
