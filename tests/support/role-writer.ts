/** A client that writes through a primary's export and remembers what was flushed, for roles. */
import { join } from "node:path";
import type { BlockDevice } from "../../src/block/types.ts";
import { connectNbdDevice } from "../../src/nbd/client.ts";
import { bunNetwork } from "../../src/platform/network.ts";
import type { EngineHandle } from "./engines.ts";

export const blockBytes = 4096;

/** Opens `engine`'s unix-socket export of `resource`. */
export function openExport(engine: EngineHandle, resource: string): Promise<BlockDevice> {
  const path = `${join(engine.home, "resources", resource)}.nbd.sock`;
  return connectNbdDevice((handlers) => bunNetwork.connect({ kind: "unix", path }, handlers));
}

/** The content of block `index` written in generation `tag`: recognisable, never all zero. */
export function blockContent(index: number, tag: number): Uint8Array {
  const data = new Uint8Array(blockBytes);
  const view = new DataView(data.buffer);
  for (let offset = 0; offset < blockBytes; offset += 8) {
    view.setUint32(offset, index + 1, true);
    view.setUint32(offset + 4, (tag * 2654435761 + offset) >>> 0, true);
  }
  return data;
}

/**
 * Writes blocks `next`, `next + 1`, … (each once), flushing every `flushEvery` writes. Only
 * writes acknowledged before a flush that was acknowledged count as durable (`flushed`).
 */
export class ContinuousWriter {
  /** Block index → tag of every write a later acknowledged flush covers. */
  readonly flushed = new Map<number, number>();
  private unflushed: Array<[number, number]> = [];
  private running: Promise<void> | undefined;
  private stopping = false;
  written = 0;

  constructor(private next: number, private readonly tag: number,
    private readonly flushEvery = 8) {}

  start(device: BlockDevice, limitBlocks: number): void {
    this.stopping = false;
    this.running = (async () => {
      while (!this.stopping && this.next < limitBlocks) {
        const index = this.next++;
        await device.write(index * blockBytes, blockContent(index, this.tag), { fua: false });
        this.written++;
        this.unflushed.push([index, this.tag]);
        if (this.unflushed.length >= this.flushEvery) await this.flush(device);
        await Bun.sleep(1);
      }
      await this.flush(device);
    })();
  }

  private async flush(device: BlockDevice): Promise<void> {
    const covered = this.unflushed;
    this.unflushed = [];
    await device.flush();
    for (const [index, tag] of covered) this.flushed.set(index, tag);
  }

  /** Writes up to block `limitBlocks` (exclusive), then flushes. */
  async runTo(device: BlockDevice, limitBlocks: number): Promise<void> {
    this.start(device, limitBlocks);
    await this.running;
  }

  /** Stops after the write in flight, flushes, and returns the next block it would write. */
  async stop(): Promise<number> {
    this.stopping = true;
    await this.running;
    return this.next;
  }
}

/** Blocks of `expected` whose content on `device` is not what was flushed. */
export async function missingBlocks(
  device: BlockDevice, expected: ReadonlyMap<number, number>,
): Promise<number[]> {
  const missing: number[] = [];
  const buffer = new Uint8Array(blockBytes);
  for (const [index, tag] of expected) {
    await device.read(index * blockBytes, buffer);
    const want = blockContent(index, tag);
    if (!buffer.every((byte, offset) => byte === want[offset])) missing.push(index);
  }
  return missing;
}
