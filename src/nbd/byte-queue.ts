/** Incoming bytes of one connection, kept as copied chunks so messages are cut cheaply. */
import { assert } from "../lib/assert.ts";

/**
 * A FIFO of bytes with a hard bound. `take` returns a view into one chunk when the message
 * lies inside it and a fresh concatenation otherwise; either way the bytes belong to the caller.
 */
export class ByteQueue {
  private readonly chunks: Uint8Array[] = [];
  private headOffset = 0;
  length = 0;

  constructor(readonly bytesMax: number) {
    assert(Number.isSafeInteger(bytesMax) && bytesMax > 0, "byte queue bound is positive");
  }

  /** Copies `chunk` in; false (and nothing queued) when the bound would be exceeded. */
  push(chunk: Uint8Array): boolean {
    if (chunk.length === 0) return true;
    if (this.length + chunk.length > this.bytesMax) return false;
    // A real copy: a runtime Buffer's slice() would share the socket's memory.
    const copy = new Uint8Array(chunk.length);
    copy.set(chunk);
    this.chunks.push(copy);
    this.length += chunk.length;
    return true;
  }

  /** The first `count` bytes without consuming them. */
  peek(count: number): Uint8Array {
    assert(count <= this.length, "peek within the queued bytes");
    const head = this.chunks[0];
    if (head !== undefined && head.length - this.headOffset >= count) {
      return head.subarray(this.headOffset, this.headOffset + count);
    }
    const joined = new Uint8Array(count);
    let filled = 0;
    let offset = this.headOffset;
    for (const chunk of this.chunks) {
      const part = chunk.subarray(offset, offset + (count - filled));
      joined.set(part, filled);
      filled += part.length;
      offset = 0;
      if (filled === count) break;
    }
    return joined;
  }

  /** Removes and returns the first `count` bytes. */
  take(count: number): Uint8Array {
    const bytes = this.peek(count);
    this.skip(count);
    return bytes;
  }

  /** Drops up to `count` bytes; returns how many were dropped. */
  skip(count: number): number {
    let remaining = Math.min(count, this.length);
    const dropped = remaining;
    while (remaining > 0) {
      const head = this.chunks[0]!;
      const available = head.length - this.headOffset;
      if (available > remaining) {
        this.headOffset += remaining;
        remaining = 0;
      } else {
        this.chunks.shift();
        this.headOffset = 0;
        remaining -= available;
      }
    }
    this.length -= dropped;
    assert(this.length >= 0, "queue length never goes negative");
    return dropped;
  }

  clear(): void {
    this.chunks.length = 0;
    this.headOffset = 0;
    this.length = 0;
  }
}
