/** A block device over a plain file or a kernel block device, with I/O through the IoEngine. */
import { assert } from "../lib/assert.ts";
import type { IoOperation, IoResult, Storage } from "../platform/types.ts";
import { OverlapOrder } from "./ordering.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags,
} from "./types.ts";

/** Largest single read or write a file device accepts; the NBD server advertises it. */
export const fileRequestBytesMax = 32 * 1024 * 1024;
/** Zeroes written per I/O when trimming or zeroing a range (a plain file has no punch-hole). */
export const fileZeroChunkBytesMax = 1024 * 1024;
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
    await this.writeZeroes(offset, lengthBytes, flags);
  }

  async writeZeroes(offset: number, lengthBytes: number, flags: { fua: boolean }) {
    this.assertRange(offset, lengthBytes);
    await this.order.run(offset, lengthBytes, true, async () => {
      const zeroes = new Uint8Array(Math.min(lengthBytes, fileZeroChunkBytesMax));
      const operations: IoOperation[] = [];
      for (let done = 0; done < lengthBytes; done += zeroes.length) {
        const chunk = Math.min(zeroes.length, lengthBytes - done);
        const buffer = chunk === zeroes.length ? zeroes : zeroes.subarray(0, chunk);
        const fd = this.writeFd(offset + done, chunk);
        operations.push({ kind: "write", fd, offset: offset + done, buffer });
      }
      if (flags.fua) operations.push({ kind: "fsync", fd: this.fd, dataOnly: true });
      const results = await this.submit(operations, true);
      results.forEach((result) => this.checked("write-zeroes", offset, result));
    });
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
