/** The contract check at the block-layer boundary, so the layers inside never re-validate. */
import { assert } from "../lib/assert.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags, type ZeroFlags,
} from "./types.ts";

/** Checks a device's own declaration once; a wrong declaration is a bug, not an input error. */
export function assertCapabilities(capabilities: BlockCapabilities, sizeBytes: number): void {
  const sizes = capabilities.blockSizes;
  assert(Number.isSafeInteger(sizeBytes) && sizeBytes >= 0, "device size is a safe integer");
  assert(sizes.minimumBytes >= 1, "minimum block size is at least one byte");
  assert(isPowerOfTwo(sizes.minimumBytes), "minimum block size is a power of two");
  assert(isPowerOfTwo(sizes.preferredBytes), "preferred block size is a power of two");
  assert(sizes.preferredBytes >= sizes.minimumBytes, "preferred block size ≥ minimum");
  assert(sizes.maximumBytes % sizes.minimumBytes === 0, "maximum is a multiple of minimum");
  if (capabilities.fua !== "none") assert(capabilities.writable, "FUA implies writable");
  if (capabilities.trim) assert(capabilities.writable, "trim implies writable");
  if (capabilities.writeZeroes) assert(capabilities.writable, "write-zeroes implies writable");
  if (capabilities.multiConnection) assert(capabilities.flush || !capabilities.writable,
    "multi-connection writable devices can flush");
}

function isPowerOfTwo(value: number): boolean {
  return Number.isSafeInteger(value) && value > 0 && (value & (value - 1)) === 0;
}

/**
 * Wraps `inner` so that every request is checked against the declared size, alignment,
 * maximum and capabilities before it reaches the layer. Violations reject with EINVAL,
 * EOVERFLOW, EPERM or ENOTSUP; after close every request rejects with ESHUTDOWN. The size is
 * read from `inner` at every check, so a device that grows (mars resize) is served to its new
 * end at once.
 */
export function checkedBlockDevice(inner: BlockDevice): BlockDevice {
  const { capabilities } = inner;
  assertCapabilities(capabilities, inner.sizeBytes);
  const sizes = capabilities.blockSizes;
  let closed = false;

  function checkRange(verb: string, offset: number, lengthBytes: number, limit: number): void {
    if (closed) throw new BlockError("ESHUTDOWN", `${verb}: device is closed`);
    if (!Number.isSafeInteger(offset) || offset < 0 || !Number.isSafeInteger(lengthBytes)) {
      throw new BlockError("EINVAL", `${verb}: offset and length must be whole numbers`);
    }
    if (lengthBytes > limit) {
      throw new BlockError("EOVERFLOW", `${verb}: ${lengthBytes} bytes exceed the ${limit} limit`);
    }
    const sizeBytes = inner.sizeBytes;
    if (offset + lengthBytes > sizeBytes) {
      throw new BlockError("EINVAL", `${verb}: range ${offset}+${lengthBytes} beyond ${sizeBytes}`);
    }
    if (offset % sizes.minimumBytes !== 0 || lengthBytes % sizes.minimumBytes !== 0) {
      throw new BlockError("EINVAL", `${verb}: not aligned to ${sizes.minimumBytes} bytes`);
    }
  }

  function checkWrite(verb: string, allowed: boolean, flags: WriteFlags): void {
    if (!capabilities.writable) throw new BlockError("EPERM", `${verb}: device is read-only`);
    if (!allowed) throw new BlockError("ENOTSUP", `${verb}: not supported by this device`);
    if (flags.fua && capabilities.fua === "none") {
      throw new BlockError("ENOTSUP", `${verb}: FUA not supported by this device`);
    }
  }

  return {
    get sizeBytes() {
      return inner.sizeBytes;
    },
    capabilities,
    async read(offset, target) {
      checkRange("read", offset, target.length, sizes.maximumBytes);
      await inner.read(offset, target);
    },
    async write(offset, data, flags) {
      checkRange("write", offset, data.length, sizes.maximumBytes);
      checkWrite("write", true, flags);
      await inner.write(offset, data, flags);
    },
    async flush() {
      if (closed) throw new BlockError("ESHUTDOWN", "flush: device is closed");
      if (!capabilities.flush) throw new BlockError("ENOTSUP", "flush: not supported");
      await inner.flush();
    },
    async trim(offset, lengthBytes, flags) {
      checkRange("trim", offset, lengthBytes, Number.MAX_SAFE_INTEGER);
      checkWrite("trim", capabilities.trim, flags);
      await inner.trim(offset, lengthBytes, flags);
    },
    async writeZeroes(offset, lengthBytes, flags: ZeroFlags) {
      checkRange("write-zeroes", offset, lengthBytes, Number.MAX_SAFE_INTEGER);
      checkWrite("write-zeroes", capabilities.writeZeroes, flags);
      await inner.writeZeroes(offset, lengthBytes, flags);
    },
    async close() {
      if (closed) return;
      closed = true;
      await inner.close();
    },
  };
}
