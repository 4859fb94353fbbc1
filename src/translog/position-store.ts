/** The persisted writeback position: two checksummed slots, so a torn update keeps the old one. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { xxHash3 } from "../platform/hash.ts";
import type { IoOperation, Storage } from "../platform/types.ts";
import type { LogPosition } from "../log/position.ts";

export const positionFileName = "writeback-position";
/** Each slot sits in its own 4 KiB block, so a torn write of one never touches the other. */
export const positionSlotStrideBytes = 4096;
const slotBytes = 40;
const slotMagic = 0x534f504d; // "MPOS"

/**
 * Slot layout (little endian): magic u32, format 1 u32, generation u64, logfile sequence u64,
 * offset u64, xxHash3 of the first 32 bytes u64. The valid slot with the higher generation wins;
 * writes alternate between the slots, each followed by fdatasync.
 */
export class PositionStore {
  private generation = 0;

  private constructor(
    private readonly storage: Storage,
    private readonly path: string,
    private readonly fd: number,
    private position: LogPosition | undefined,
  ) {}

  /** Opens the store, creating it durably (file and directory entry) when missing. */
  static async open(storage: Storage, directory: string): Promise<PositionStore> {
    const path = `${directory}/${positionFileName}`;
    const existed = (await storage.files.status(path)) !== undefined;
    const fd = await storage.files.open(path, { create: true });
    const store = new PositionStore(storage, path, fd, undefined);
    if (existed) await store.load();
    if (!existed) {
      await storage.files.truncate(fd, 2 * positionSlotStrideBytes);
      await store.sync();
      await storage.files.syncDirectory(directory);
    }
    return store;
  }

  /** The last persisted position, or undefined when none was ever written. */
  get current(): LogPosition | undefined {
    return this.position;
  }

  /** Persists `position` durably; it never moves backwards. */
  async write(position: LogPosition): Promise<void> {
    if (this.position) {
      const backwards = position.sequence < this.position.sequence ||
        (position.sequence === this.position.sequence &&
          position.offsetBytes < this.position.offsetBytes);
      assert(!backwards, "the writeback position never moves backwards");
    }
    const generation = this.generation + 1;
    const slot = encodeSlot(generation, position);
    assert(decodeSlot(slot)?.generation === generation, "slot decodes as written");
    const offset = (generation % 2) * positionSlotStrideBytes;
    await this.run([
      { kind: "write", fd: this.fd, offset, buffer: slot },
      { kind: "fsync", fd: this.fd, dataOnly: true },
    ]);
    this.generation = generation;
    this.position = position;
  }

  async close(): Promise<void> {
    await this.storage.files.close(this.fd);
  }

  private async load(): Promise<void> {
    const buffer = new Uint8Array(2 * positionSlotStrideBytes);
    await this.run([{ kind: "read", fd: this.fd, offset: 0, buffer }]);
    for (const start of [0, positionSlotStrideBytes]) {
      const slot = decodeSlot(buffer.subarray(start, start + slotBytes));
      if (slot && slot.generation > this.generation) {
        this.generation = slot.generation;
        this.position = slot.position;
      }
    }
  }

  private async sync(): Promise<void> {
    await this.run([{ kind: "fsync", fd: this.fd, dataOnly: false }]);
  }

  private async run(operations: IoOperation[]): Promise<void> {
    const results = await this.storage.io.submit(operations, { ordered: true });
    for (const result of results) {
      if (!result.ok) {
        throw new MarsError("io", `${this.path}: ${result.message}`, {
          details: { file: this.path, errno: result.errno },
        });
      }
    }
  }
}

function encodeSlot(generation: number, position: LogPosition): Uint8Array {
  const bytes = new Uint8Array(slotBytes);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, slotMagic, true);
  view.setUint32(4, 1, true);
  view.setBigUint64(8, BigInt(generation), true);
  view.setBigUint64(16, BigInt(position.sequence), true);
  view.setBigUint64(24, BigInt(position.offsetBytes), true);
  view.setBigUint64(32, xxHash3(bytes.subarray(0, 32)), true);
  return bytes;
}

function decodeSlot(bytes: Uint8Array) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (view.getUint32(0, true) !== slotMagic || view.getUint32(4, true) !== 1) return undefined;
  if (view.getBigUint64(32, true) !== xxHash3(bytes.subarray(0, 32))) return undefined;
  const position = {
    sequence: Number(view.getBigUint64(16, true)),
    offsetBytes: Number(view.getBigUint64(24, true)),
  };
  return { generation: Number(view.getBigUint64(8, true)), position };
}
