/** A block device over a plain file or a kernel block device, with I/O through the IoEngine. */
import { assert } from "../lib/assert.ts";
import type { FallocateMode, IoOperation, IoResult, Storage } from "../platform/types.ts";
import { OverlapOrder } from "./ordering.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags,
} from "./types.ts";

/** Largest single read or write a file device accepts; the NBD server advertises it. */
export const fileRequestBytesMax = 32 * 1024 * 1024;
/** Zeroes written per I/O where fallocate cannot zero a range. */
export const fileZeroChunkBytesMax = 1024 * 1024;
/** Such writes submitted in one batch. */
export const fileZeroBatchWritesMax = 64;
/**
 * fallocate failures that mean "not here" rather than a failed disk: the file system or device
 * lacks the mode (EOPNOTSUPP, its alias ENOTSUP, ENOSYS, ENODEV) or cannot align the range
 * (EINVAL, a block device's logical blocks): the range is then zeroed by writing.
 */
const fallbackErrnos = new Set(["EOPNOTSUPP", "ENOTSUP", "ENOSYS", "ENODEV", "EINVAL"]);
/** Logical block size assumed for O_DIRECT (the common 512e/4Kn compromise is 4096). */
export const directBlockBytes = 4096;

export interface FileDeviceOptions {
  readonly readOnly?: boolean;
  /** O_DIRECT: requests must then be aligned to `directBlockBytes`. */
  readonly direct?: boolean;
  /** Create a regular file of this size when the path is missing. */
  readonly createBytes?: number;
  /**
   * Aligned writes bypass the page cache through a second, O_DIRECT descriptor; reads and
   * unaligned writes stay buffered (the kernel keeps the two coherent). For the translog's
   * writeback and a replica's replay: the data is already in memory and in the log, so a cached
   * copy only costs a page-cache copy now and a flush later. Ignored where O_DIRECT is refused.
   */
  readonly directWrites?: boolean;
}

export interface FileDevice extends BlockDevice {
  readonly path: string;
  /**
   * Reads the file's (or block device's) size again and grows the device to it (mars resize:
   * the disk was grown underneath); never shrinks it. Resolves to the size now served.
   */
  remeasure(): Promise<number>;
}

/** Opens `path` as a device sized as the file (or block device) is now. Unchecked: wrap it. */
export async function openFileDevice(
  storage: Storage, path: string, options: FileDeviceOptions = {},
): Promise<FileDevice> {
  const create = options.createBytes !== undefined;
  const fd = await storage.files.open(path, {
    create, readOnly: options.readOnly === true, direct: options.direct === true,
  });
  try {
    if (create && (await storage.files.sizeOf(fd)) === 0 && options.createBytes! > 0) {
      await storage.files.truncate(fd, options.createBytes!);
    }
    const sizeBytes = await storage.files.sizeOf(fd);
    const directFd = await openDirectWrites(storage, path, options);
    return new FileBlockDevice(storage, path, { fd, directFd }, sizeBytes, options);
  } catch (error) {
    await storage.files.close(fd);
    throw error;
  }
}

/** The O_DIRECT descriptor for aligned writes, or -1 (not asked for, or refused here). */
async function openDirectWrites(
  storage: Storage, path: string, options: FileDeviceOptions,
): Promise<number> {
  if (options.directWrites !== true || options.direct === true || options.readOnly === true) {
    return -1;
  }
  return storage.files.open(path, { direct: true }).catch(() => -1);
}

function aligned(offset: number, lengthBytes: number): boolean {
  return offset % directBlockBytes === 0 && lengthBytes % directBlockBytes === 0;
}

function capabilitiesOf(options: FileDeviceOptions): BlockCapabilities {
  const writable = options.readOnly !== true;
  const minimumBytes = options.direct === true ? directBlockBytes : 1;
  return {
    writable,
    flush: true,
    fua: writable ? "native" : "none",
    trim: writable,
    writeZeroes: writable,
    multiConnection: true,
    blockSizes: { minimumBytes, preferredBytes: 4096, maximumBytes: fileRequestBytesMax },
  };
}

class FileBlockDevice implements FileDevice {
  readonly capabilities: BlockCapabilities;
  private readonly order = new OverlapOrder();
  /** fallocate modes this file (its file system or device) refused: zeroes are written. */
  private readonly unsupportedModes = new Set<FallocateMode>();
  private closed = false;

  private readonly fd: number;
  /** O_DIRECT descriptor for aligned writes (directWrites), else -1. */
  private readonly directFd: number;

  constructor(
    private readonly storage: Storage,
    readonly path: string,
    descriptors: { fd: number; directFd: number },
    private measuredBytes: number,
    options: FileDeviceOptions,
  ) {
    this.fd = descriptors.fd;
    this.directFd = descriptors.directFd;
    this.capabilities = capabilitiesOf(options);
  }

  /** Where a write of this range goes: around the page cache when it may. */
  private writeFd(offset: number, lengthBytes: number): number {
    return this.directFd >= 0 && aligned(offset, lengthBytes) ? this.directFd : this.fd;
  }

  get sizeBytes(): number {
    return this.measuredBytes;
  }

  async remeasure(): Promise<number> {
    assert(!this.closed, "remeasure on an open device");
    const measured = await this.storage.files.sizeOf(this.fd);
    this.measuredBytes = Math.max(this.measuredBytes, measured);
    return this.measuredBytes;
  }

  async read(offset: number, target: Uint8Array): Promise<void> {
    this.assertRange(offset, target.length);
    await this.order.run(offset, target.length, false, async () => {
      const [result] = await this.submit([{ kind: "read", fd: this.fd, offset, buffer: target }]);
      const bytes = this.checked("read", offset, result);
      // A regular file shorter than the device (never on our own files) reads as zeroes.
      if (bytes < target.length) target.fill(0, bytes);
    });
  }

  async write(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    this.assertRange(offset, data.length);
    await this.order.run(offset, data.length, true, async () => {
      const fd = this.writeFd(offset, data.length);
      const operations: IoOperation[] = [{ kind: "write", fd, offset, buffer: data }];
      if (flags.fua) operations.push({ kind: "fsync", fd: this.fd, dataOnly: true });
      const results = await this.submit(operations, true, flags.background === true);
      results.forEach((result) => this.checked("write", offset, result));
    });
  }

  async flush(): Promise<void> {
    assert(!this.closed, "flush on an open device");
    const [result] = await this.submit([{ kind: "fsync", fd: this.fd, dataOnly: true }]);
    this.checked("flush", 0, result);
  }

  async trim(offset: number, lengthBytes: number, flags: { fua: boolean }): Promise<void> {
    await this.zeroRange(offset, lengthBytes, flags.fua, "punch-hole");
  }

  async writeZeroes(
    offset: number, lengthBytes: number, flags: { fua: boolean; noHole?: boolean },
  ): Promise<void> {
    await this.zeroRange(offset, lengthBytes, flags.fua,
      flags.noHole === true ? "zero-range" : "punch-hole");
  }

  /**
   * The range reads as zeroes afterwards, on every member alike (trim too: replicas must read
   * the same). fallocate does it without moving the bytes (a 1 TiB resize, mkfs discarding a
   * whole device); where the file system or device cannot, zeroes are written.
   */
  private async zeroRange(
    offset: number, lengthBytes: number, fua: boolean, preferred: FallocateMode,
  ): Promise<void> {
    this.assertRange(offset, lengthBytes);
    if (lengthBytes === 0) return;
    await this.order.run(offset, lengthBytes, true, async () => {
      const modes: FallocateMode[] = preferred === "punch-hole"
        ? ["punch-hole", "zero-range"] : ["zero-range"];
      for (const mode of modes) {
        if (this.unsupportedModes.has(mode)) continue;
        const operations: IoOperation[] = [{ kind: "fallocate", fd: this.fd, mode, offset,
          lengthBytes }];
        if (fua) operations.push({ kind: "fsync", fd: this.fd, dataOnly: true });
        const results = await this.submit(operations, true);
        const allocated = results[0]!;
        // Only fallocate's own refusal falls back; any other failure (the disk's, the sync's)
        // is the request's error.
        if (allocated.ok || !fallbackErrnos.has(allocated.errno)) {
          results.forEach((result) => this.checked("write-zeroes", offset, result));
          return;
        }
        if (allocated.errno !== "EINVAL") this.unsupportedModes.add(mode);
      }
      await this.writeLiteralZeroes(offset, lengthBytes, fua);
    });
  }

  /** Zeroes written in batches of `fileZeroBatchWritesMax` chunk writes (a large range too). */
  private async writeLiteralZeroes(offset: number, lengthBytes: number, fua: boolean) {
    const zeroes = new Uint8Array(Math.min(lengthBytes, fileZeroChunkBytesMax));
    const batchBytes = zeroes.length * fileZeroBatchWritesMax;
    for (let batchStart = 0; batchStart < lengthBytes; batchStart += batchBytes) {
      const batchEnd = Math.min(lengthBytes, batchStart + batchBytes);
      const operations: IoOperation[] = [];
      for (let done = batchStart; done < batchEnd; done += zeroes.length) {
        const chunk = Math.min(zeroes.length, batchEnd - done);
        const buffer = chunk === zeroes.length ? zeroes : zeroes.subarray(0, chunk);
        operations.push({ kind: "write", fd: this.writeFd(offset + done, chunk),
          offset: offset + done, buffer });
      }
      if (fua && batchEnd === lengthBytes) {
        operations.push({ kind: "fsync", fd: this.fd, dataOnly: true });
      }
      const results = await this.submit(operations, true);
      results.forEach((result) => this.checked("write-zeroes", offset, result));
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    await this.order.drain();
    if (this.capabilities.writable) await this.flush();
    this.closed = true;
    if (this.directFd >= 0) await this.storage.files.close(this.directFd);
    await this.storage.files.close(this.fd);
  }

  private assertRange(offset: number, lengthBytes: number): void {
    assert(!this.closed, "request on an open device");
    assert(offset >= 0 && offset + lengthBytes <= this.sizeBytes, "request inside the device");
  }

  private submit(
    operations: IoOperation[], ordered = false, background = false,
  ): Promise<IoResult[]> {
    return this.storage.io.submit(operations, { ordered, background });
  }

  private checked(verb: string, offset: number, result: IoResult | undefined): number {
    assert(result !== undefined, "one result per operation");
    if (result.ok) return result.bytes;
    const errno = result.errno === "ENOSPC" ? "ENOSPC" : "EIO";
    throw new BlockError(errno, `${verb} at ${offset} on ${this.path}: ${result.message}`, {
      cause: result,
    });
  }
}
