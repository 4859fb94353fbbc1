// `bun run bench sync`: fast full sync of identical and differing disks vs a sequential read.
// Usage: bun run bench sync [--dir DIR] [--target-dir DIR] [--size-mib N] [--rounds N]
//   [--rtt-ms MS] [--cached] [--source-thread]. --target-dir on another device (e.g. /dev/shm)
//   gives the target its own disk, as on two hosts: then the sync should keep up with one disk's
//   read. --source-thread runs the source in a worker thread (its own CPU, as on its own host);
//   by default both sides share the main thread.
import { mkdirSync, openSync, closeSync, rmSync, writeSync, ftruncateSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { openFileDevice, type FileDevice } from "../../src/block/file.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { openIoEngine } from "../../src/platform/io/index.ts";
import type { Storage } from "../../src/platform/types.ts";
import { ChunkBufferPool, syncChunkBytes } from "../../src/sync/chunk.ts";
import { memoryCursorStore } from "../../src/sync/cursor.ts";
import { runFullSync, type SyncPeer } from "../../src/sync/full-sync.ts";
import type { ChunkReply } from "../../src/sync/chunk.ts";
import { localSyncSource } from "../../src/sync/source.ts";
import type { SourceRequest } from "./sync-source-worker.ts";

const { values } = parseArgs({
  options: {
    dir: { type: "string", default: "/var/tmp/mars-bench-sync" },
    "target-dir": { type: "string" },
    "size-mib": { type: "string", default: "1024" },
    rounds: { type: "string", default: "3" },
    "rtt-ms": { type: "string", default: "0" },
    cached: { type: "boolean", default: false },
    "source-thread": { type: "boolean", default: false },
  },
});
const sizeBytes = Number(values["size-mib"]) * 1024 * 1024;
const rounds = Number(values.rounds);
const rttMs = Number(values["rtt-ms"]);
const direct = !values.cached;
const targetDirectory = values["target-dir"] ?? values.dir!;
/** tmpfs refuses O_DIRECT: a target there is read through the page cache (it is memory). */
const targetDirect = direct && !targetDirectory.startsWith("/dev/shm");
const readChunkBytes = 1024 * 1024;
const readWindow = 8;

/** Writes `path` with pseudo-random 1 MiB pieces; `differEvery` > 0 flips one block per N. */
function writeDisk(path: string, seed: number, differEvery: number): void {
  const fd = openSync(path, "w");
  ftruncateSync(fd, sizeBytes);
  const piece = new Uint8Array(readChunkBytes);
  let state = seed >>> 0 || 1;
  for (let offset = 0; offset < sizeBytes; offset += piece.length) {
    const words = new Uint32Array(piece.buffer);
    for (let index = 0; index < words.length; index++) {
      state ^= state << 13; state ^= state >>> 17; state ^= state << 5;
      words[index] = state >>> 0;
    }
    if (differEvery > 0) {
      for (let block = 0; block < piece.length / 4096; block += differEvery) {
        piece[block * 4096] = piece[block * 4096]! ^ 1;
      }
    }
    writeSync(fd, piece, 0, piece.length, offset);
  }
  closeSync(fd);
}

/** Page-aligned read buffers (no bounce copy), as the engine's sync uses (chunk.ts). */
let allocate: ((sizeBytes: number) => Uint8Array) | undefined;
const readBuffers: Uint8Array[] = [];

async function sequentialRead(devices: FileDevice[]): Promise<number> {
  const started = performance.now();
  let taken = 0;
  await Promise.all(devices.map(async (device) => {
    let next = 0;
    const reader = async () => {
      readBuffers[taken] ??= allocate?.(readChunkBytes) ?? new Uint8Array(readChunkBytes);
      const buffer = readBuffers[taken++]!;
      while (next < sizeBytes) {
        const offset = next;
        next += readChunkBytes;
        await device.read(offset, buffer);
      }
    };
    await Promise.all(Array.from({ length: readWindow }, reader));
  }));
  return performance.now() - started;
}

function delayed(peer: SyncPeer): SyncPeer {
  if (rttMs === 0) return peer;
  const wait = () => new Promise((resolve) => setTimeout(resolve, rttMs));
  return { ...peer, compare: async (request) => {
    await wait();
    return peer.compare(request);
  } };
}

/** Each side its own pool, as on two hosts. */
let pools: { source: ChunkBufferPool; target: ChunkBufferPool } | undefined;

/** The source in a worker thread: the same comparisons, its own CPU (as on its own host). */
async function threadSource(path: string): Promise<{ peer: SyncPeer; close(): Promise<void> }> {
  const worker = new Worker(new URL("./sync-source-worker.ts", import.meta.url).href);
  const waiting = new Map<number, (reply: ChunkReply) => void>();
  let next: ((value: { sizeBytes?: number }) => void) | undefined;
  worker.onmessage = (event: MessageEvent) => {
    const message = event.data as { type: string; id?: number; reply?: ChunkReply };
    if (message.type === "reply") {
      waiting.get(message.id!)!(message.reply!);
      waiting.delete(message.id!);
    } else next?.(message as { sizeBytes?: number });
  };
  const ask = (message: SourceRequest) => new Promise<{ sizeBytes?: number }>((resolve) => {
    next = resolve;
    worker.postMessage(message);
  });
  const { sizeBytes: deviceBytes } = await ask({ type: "open", path, direct });
  let id = 0;
  const peer: SyncPeer = {
    begin: async () => ({ source: "source", sizeBytes: deviceBytes!,
      startPosition: { sequence: 1, offsetBytes: 0 } }),
    compare: (request) => new Promise((resolve) => {
      waiting.set(++id, resolve);
      worker.postMessage({ type: "compare", id, request } satisfies SourceRequest);
    }),
    endPosition: async () => ({ sequence: 1, offsetBytes: 0 }),
  };
  return { peer, close: async () => {
    await ask({ type: "close" });
    worker.terminate();
  } };
}

async function syncOnce(storage: Storage, source: string, target: string) {
  pools ??= {
    source: new ChunkBufferPool(syncChunkBytes, allocate),
    target: new ChunkBufferPool(syncChunkBytes, allocate),
  };
  const disk = await openFileDevice(storage, target, { direct: targetDirect });
  let peer: SyncPeer;
  let closeSource: () => Promise<void>;
  if (!values["source-thread"]) {
    const view = await openFileDevice(storage, source, { direct, readOnly: true });
    peer = localSyncSource({
      host: "source", view, reads: "device-view",
      logEnd: () => ({ sequence: 1, offsetBytes: 0 }),
      writebackPosition: () => ({ sequence: 1, offsetBytes: 0 }), buffers: pools.source,
    });
    closeSource = () => view.close();
  } else {
    const threaded = await threadSource(source);
    peer = threaded.peer;
    closeSource = threaded.close;
  }
  const started = performance.now();
  const outcome = await runFullSync({
    target: disk, peer: delayed(peer), cursors: memoryCursorStore(), clock: systemClock,
    buffers: pools.target,
  });
  const elapsedMs = performance.now() - started;
  await closeSource();
  await disk.close();
  return { elapsedMs, blocks: outcome.transferredBlocks };
}

function median(values: number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const mibPerS = (ms: number) => (sizeBytes / 1024 / 1024 / (ms / 1000)).toFixed(0);

async function main(): Promise<void> {
  mkdirSync(values.dir!, { recursive: true });
  const source = join(values.dir!, "source.img");
  mkdirSync(targetDirectory, { recursive: true });
  const target = join(targetDirectory, "mars-bench-sync-target.img");
  const io = openIoEngine();
  const storage: Storage = { files: systemFiles, io: io.engine };
  allocate = io.engine.allocateBuffer?.bind(io.engine);
  writeDisk(source, 1, 0);
  console.log(`sync bench: ${sizeBytes >> 20} MiB, ${direct ? "O_DIRECT" : "page cache"}, ` +
    `target in ${targetDirectory}, ` +
    `rtt ${rttMs} ms, io ${io.engine.name}, ${rounds} rounds, source in ` +
    `${values["source-thread"] ? "its own thread" : "the main thread"}`);
  for (const [label, differEvery] of [["identical", 0], ["differing (1 block in 16)", 16],
    ["differing (every block)", 1]] as const) {
    const reads: number[] = [];
    const bothReads: number[] = [];
    const syncs: number[] = [];
    let blocks = 0;
    for (let round = 0; round < rounds; round++) {
      writeDisk(target, 1, differEvery);
      const one = await openFileDevice(storage, source, { direct, readOnly: true });
      reads.push(await sequentialRead([one]));
      const other = await openFileDevice(storage, target,
        { direct: targetDirect, readOnly: true });
      bothReads.push(await sequentialRead([one, other]));
      await one.close();
      await other.close();
      const result = await syncOnce(storage, source, target);
      syncs.push(result.elapsedMs);
      blocks = result.blocks;
    }
    const read = median(reads);
    const both = median(bothReads);
    const sync = median(syncs);
    console.log(`${label}: sync ${mibPerS(sync)} MiB/s (${blocks} blocks sent), ` +
      `read one disk ${mibPerS(read)} MiB/s → ratio ${(read / sync).toFixed(2)}; ` +
      `read both disks at once (what the sync reads here) ${mibPerS(both / 2)} MiB/s of disk ` +
      `→ ratio ${(both / sync).toFixed(2)}`);
  }
  await io.engine.close();
  rmSync(values.dir!, { recursive: true, force: true });
  rmSync(target, { force: true });
}

await main();
