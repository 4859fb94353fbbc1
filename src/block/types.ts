/** The block-layer interface every device implements and the NBD server serves: one verb each. */
import { MarsError } from "../lib/errors.ts";

/** How a layer handles the FUA flag: not at all, by a flush after the write, or natively. */
export type FuaSupport = "none" | "emulate" | "native";

export interface BlockSizes {
  /** Smallest addressable unit; every offset and length is a multiple when `strict`. */
  readonly minimumBytes: number;
  readonly preferredBytes: number;
  /** Largest single read or write. */
  readonly maximumBytes: number;
}

/** What a layer declares it can do; the NBD transmission flags are derived from this alone. */
export interface BlockCapabilities {
  readonly writable: boolean;
  readonly flush: boolean;
  readonly fua: FuaSupport;
  readonly trim: boolean;
  readonly writeZeroes: boolean;
  /** Flush on one connection makes writes of every connection durable (NBD CAN_MULTI_CONN). */
  readonly multiConnection: boolean;
  readonly blockSizes: BlockSizes;
}

export interface WriteFlags {
  /** Force unit access: the request completes only once its data is durable. */
  readonly fua: boolean;
  /** The caller lets the device keep the written buffer without copying it (PayloadLease). */
  readonly lease?: PayloadLease;
  /** Nobody waits for it in a hurry (writeback): a device may run it on another thread. */
  readonly background?: boolean;
}

/**
 * A write's buffer may be kept past the request: `keep()` once, and call what it returns once
 * when done. Until then the caller neither changes nor reuses the buffer. Without a lease a
 * device must copy what it keeps after the write resolved. Wrappers may drop it (that is safe).
 */
export interface PayloadLease {
  keep(): () => void;
}

export interface ZeroFlags extends WriteFlags {
  /** The range must read as zeroes and stay allocated (NBD_CMD_FLAG_NO_HOLE). */
  readonly noHole: boolean;
}

/**
 * A block device. Requests may overlap in time; a layer orders overlapping ones as issued.
 * A write that resolved is visible to later reads; it is durable only after a flush that
 * started after it resolved, or when it carried FUA.
 */
export interface BlockDevice {
  readonly sizeBytes: number;
  readonly capabilities: BlockCapabilities;
  /** Fills `target` with the bytes at [offset, offset + target.length). */
  read(offset: number, target: Uint8Array): Promise<void>;
  write(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void>;
  /** Makes every write that resolved before this call durable. */
  flush(): Promise<void>;
  /** The range may read back as anything afterwards (mars layers return zeroes). */
  trim(offset: number, lengthBytes: number, flags: WriteFlags): Promise<void>;
  writeZeroes(offset: number, lengthBytes: number, flags: ZeroFlags): Promise<void>;
  /** Flushes and releases the device; later calls fail with ESHUTDOWN. */
  close(): Promise<void>;
}

/** The error numbers a block layer may report; the NBD server maps them to protocol errors. */
export type BlockErrno =
  | "EIO" | "ENOSPC" | "EINVAL" | "EOVERFLOW" | "EPERM" | "ENOTSUP" | "ESHUTDOWN";

/** A failed block request; `errno` travels to the NBD client as its error reply. */
export class BlockError extends MarsError {
  readonly errno: BlockErrno;

  constructor(errno: BlockErrno, message: string, options: { cause?: unknown } = {}) {
    super(errno === "ENOSPC" ? "no-space" : "io", message, {
      cause: options.cause,
      details: { errno },
    });
    this.errno = errno;
  }
}
