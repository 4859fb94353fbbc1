/** Page-aligned I/O buffers outside the GC heap: fit for O_DIRECT, safe to hand to the kernel. */
// Memory comes from anonymous mmap and is wrapped with toArrayBuffer, so the garbage collector
// can neither move nor free it. The engines recognise these buffers (by their ArrayBuffer) and
// pass their address to the kernel without copying; any other Uint8Array is bounced.
import { toArrayBuffer } from "bun:ffi";
import { assert, assertCount } from "../../lib/assert.ts";
import { MarsError } from "../../lib/errors.ts";
import { mapAnonymousMemory, unmap } from "./native.ts";

/** The page size of x86_64 Linux: every aligned buffer starts on, and spans whole, pages. */
export const pageBytes = 4096;
/** All standalone aligned buffers of the process together (they are never freed). */
export const alignedAllocationBytesMax = 8 * 1024 ** 3;

/** Base address of every mmapped ArrayBuffer this module made. */
const baseAddresses = new WeakMap<ArrayBuffer, number>();
let allocatedBytes = 0;

function roundUpToPage(sizeBytes: number): number {
  return Math.ceil(sizeBytes / pageBytes) * pageBytes;
}

function mapRegion(sizeBytes: number, what: string): { address: number; memory: ArrayBuffer } {
  const mapped = mapAnonymousMemory(sizeBytes);
  if (typeof mapped !== "number") {
    throw new MarsError("io", `${what}: mmap of ${sizeBytes} bytes failed: ${mapped.message}`, {
      details: { errno: mapped.name },
    });
  }
  assert(mapped % pageBytes === 0, "mmap returns page-aligned memory");
  const memory = toArrayBuffer(mapped, 0, sizeBytes);
  baseAddresses.set(memory, mapped);
  return { address: mapped, memory };
}

/**
 * A zeroed, page-aligned buffer of `sizeBytes` that lives as long as the process: for buffers
 * a component keeps (overlay slabs, log staging). Recycle short-lived ones through a pool.
 */
export function allocateAlignedBuffer(sizeBytes: number): Uint8Array {
  assertCount(sizeBytes, "aligned buffer size");
  assert(sizeBytes > 0, "an aligned buffer holds at least one byte");
  const mappedBytes = roundUpToPage(sizeBytes);
  if (allocatedBytes + mappedBytes > alignedAllocationBytesMax) {
    throw new MarsError("io", `aligned buffers would exceed ${alignedAllocationBytesMax} bytes`);
  }
  const { memory } = mapRegion(mappedBytes, "allocate aligned buffer");
  allocatedBytes += mappedBytes;
  return new Uint8Array(memory, 0, sizeBytes);
}

/** The memory address of `buffer` when it is one of ours, else undefined (GC memory). */
export function alignedAddressOf(buffer: Uint8Array): number | undefined {
  const base = baseAddresses.get(buffer.buffer as ArrayBuffer);
  return base === undefined ? undefined : base + buffer.byteOffset;
}

export function isAlignedBuffer(buffer: Uint8Array): boolean {
  return baseAddresses.has(buffer.buffer as ArrayBuffer);
}

/**
 * Fixed-size aligned buffers carved out of one mapping, recycled through a free list. Pages are
 * only backed by RAM once touched, so a generous slot size costs address space, not memory.
 */
export class AlignedBufferPool {
  readonly slotBytes: number;
  readonly slotsMax: number;
  private readonly address: number;
  private readonly regionBytes: number;
  private slots: Uint8Array[];
  private readonly free: number[] = [];
  private readonly isFree: boolean[];
  private closed = false;

  constructor(slotBytes: number, slotsMax: number) {
    assert(slotBytes > 0 && slotBytes % pageBytes === 0, "pool slots are whole pages");
    assert(slotsMax > 0 && Number.isSafeInteger(slotsMax), "a pool has at least one slot");
    this.slotBytes = slotBytes;
    this.slotsMax = slotsMax;
    this.regionBytes = slotBytes * slotsMax;
    const { address, memory } = mapRegion(this.regionBytes, "aligned buffer pool");
    this.address = address;
    this.slots = [];
    for (let index = 0; index < slotsMax; index++) {
      this.slots.push(new Uint8Array(memory, index * slotBytes, slotBytes));
    }
    for (let index = slotsMax - 1; index >= 0; index--) this.free.push(index);
    this.isFree = new Array<boolean>(slotsMax).fill(true);
  }

  get availableCount(): number {
    return this.free.length;
  }

  /** A whole slot, or undefined while every slot is in use. */
  acquire(): Uint8Array | undefined {
    assert(!this.closed, "a closed pool hands out no buffers");
    const index = this.free.pop();
    if (index === undefined) return undefined;
    this.isFree[index] = false;
    return this.slots[index]!;
  }

  release(buffer: Uint8Array): void {
    const address = alignedAddressOf(buffer);
    assert(address !== undefined, "a released buffer came from a pool");
    const index = (address - this.address) / this.slotBytes;
    assert(Number.isInteger(index) && index >= 0 && index < this.slotsMax, "buffer is a slot");
    assert(this.isFree[index] === false, "a slot is released once per acquire");
    this.isFree[index] = true;
    this.free.push(index);
  }

  /** Unmaps the region; every slot must have been released (no view may outlive this). */
  close(): void {
    if (this.closed) return;
    assert(this.free.length === this.slotsMax, "every pool slot is back before the pool closes");
    this.closed = true;
    this.slots = [];
    this.free.length = 0;
    unmap(this.address, this.regionBytes);
  }
}
