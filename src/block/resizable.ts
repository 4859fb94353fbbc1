/** Devices whose size grows while they serve (mars resize): an export bound, a replica's disk. */
import { assert } from "../lib/assert.ts";
import type { FileDevice } from "./file.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags, type ZeroFlags,
} from "./types.ts";

/**
 * Serves the first `sizeBytes` of `inner` (the resource's size, which may be less than its
 * disk's) and grows when told to. Callers are contract-checked against `sizeBytes` (the NBD
 * server's checked device, the sync source's request check), so a request beyond it is a bug.
 */
export class BoundedDevice implements BlockDevice {
  constructor(private readonly inner: BlockDevice, private boundBytes: number) {
    assert(Number.isSafeInteger(boundBytes) && boundBytes >= 0, "a bound is a device size");
    assert(boundBytes <= inner.sizeBytes, "the device below covers the bound");
  }

  get sizeBytes(): number {
    return this.boundBytes;
  }

  get capabilities(): BlockCapabilities {
    return this.inner.capabilities;
  }

  /** Serves up to `sizeBytes` from now on; the layers below must cover it already. */
  grow(sizeBytes: number): void {
    assert(Number.isSafeInteger(sizeBytes), "a size is a safe integer");
    assert(sizeBytes >= this.boundBytes, "a device only grows");
    assert(sizeBytes <= this.inner.sizeBytes, "the device below covers the new size");
    this.boundBytes = sizeBytes;
  }

  read(offset: number, target: Uint8Array): Promise<void> {
    this.assertInside(offset, target.length);
    return this.inner.read(offset, target);
  }

  write(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    this.assertInside(offset, data.length);
    return this.inner.write(offset, data, flags);
  }

  flush(): Promise<void> {
    return this.inner.flush();
  }

  trim(offset: number, lengthBytes: number, flags: WriteFlags): Promise<void> {
    this.assertInside(offset, lengthBytes);
    return this.inner.trim(offset, lengthBytes, flags);
  }

  writeZeroes(offset: number, lengthBytes: number, flags: ZeroFlags): Promise<void> {
    this.assertInside(offset, lengthBytes);
    return this.inner.writeZeroes(offset, lengthBytes, flags);
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  private assertInside(offset: number, lengthBytes: number): void {
    assert(offset + lengthBytes <= this.boundBytes, "requests stay inside the exported size");
  }
}

/**
 * A replica's disk: a request past its end measures the disk again first (the resource grew,
 * and the disk underneath with it), so replay goes on beyond the old end. Still beyond: the
 * disk is too small, an operating error (ENOSPC, naming the disk) the replica reports and
 * retries, never a crash.
 */
export function growingFileDevice(file: FileDevice): BlockDevice {
  const grown = async (endBytes: number): Promise<void> => {
    const measured = await file.remeasure();
    if (endBytes <= measured) return;
    throw new BlockError("ENOSPC", `disk ${file.path} has ${measured} bytes: a write reaches ` +
      `${endBytes} (grow the disk to the resource's size)`);
  };
  // Inside the known size (nearly always) the request goes straight through.
  const inside = (offset: number, lengthBytes: number, action: () => Promise<void>) =>
    offset + lengthBytes <= file.sizeBytes ? action() : grown(offset + lengthBytes).then(action);
  return {
    get sizeBytes() {
      return file.sizeBytes;
    },
    capabilities: file.capabilities,
    read: (offset, target) => inside(offset, target.length, () => file.read(offset, target)),
    write: (offset, data, flags) =>
      inside(offset, data.length, () => file.write(offset, data, flags)),
    flush: () => file.flush(),
    trim: (offset, lengthBytes, flags) =>
      inside(offset, lengthBytes, () => file.trim(offset, lengthBytes, flags)),
    writeZeroes: (offset, lengthBytes, flags) =>
      inside(offset, lengthBytes, () => file.writeZeroes(offset, lengthBytes, flags)),
    close: () => file.close(),
  };
}
