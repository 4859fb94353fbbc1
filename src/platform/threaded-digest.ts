/** Logfile content digests on a worker thread: sha256 was ~45% of the event loop at 1 MiB. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { alignedAddressOf } from "./io/aligned.ts";
import type { ContentDigest } from "./types.ts";

export type DigestRequest =
  | { readonly kind: "open" | "close"; readonly id: number }
  | {
    readonly kind: "update"; readonly id: number; readonly address: number;
    readonly lengthBytes: number;
    /** Its number among this digest's updates (1, 2, ...); the worker echoes it when done. */
    readonly ordinal: number;
    /** Instead of the address: a view of shared memory, or else a copy. */
    readonly bytes?: Uint8Array;
  }
  | { readonly kind: "digest"; readonly id: number; readonly shared: SharedArrayBuffer };

/** Longest wait for a digest; the worker hashes ~1.5 GB/s, so this means it is gone. */
const digestWaitMsMax = 60_000;
/** Updates not yet consumed per digest; the log writer has a few batches in flight at most. */
const pendingUpdatesMax = 4096;

/** One worker for the process, started on first use (again after it stopped). */
let worker: Worker | undefined;
interface Listener {
  /** The worker consumed this digest's updates through `ordinal`. */
  readonly consumed: (ordinal: number) => void;
  /** The worker stopped: it reads no buffer any more, and this digest is lost. */
  readonly lost: () => void;
}
const listeners = new Map<number, Listener>();
let nextId = 1;

/** Stops the worker (tests: a worker that died); its digests are lost, new ones start anew. */
export function stopDigestWorker(): void {
  const stopping = worker;
  if (stopping === undefined) return;
  stopping.terminate();
  workerStopped(stopping);
}

function workerStopped(stopped: Worker): void {
  if (worker !== stopped) return;
  worker = undefined;
  const lost = [...listeners.values()];
  listeners.clear();
  for (const listener of lost) listener.lost();
}

function theWorker(): Worker {
  if (worker !== undefined) return worker;
  // In the compiled binary every module's import.meta.url names the binary, and the worker
  // entry (scripts/build.ts) sits at its path below src/; from source it is this file's sibling.
  const compiled = import.meta.url.includes("/$bunfs/");
  const entry = compiled ? "./platform/digest-worker.ts" : "./digest-worker.ts";
  const started = new Worker(new URL(entry, import.meta.url).href);
  started.onmessage = (event: MessageEvent<{ id: number; ordinal: number }>) =>
    listeners.get(event.data.id)?.consumed(event.data.ordinal);
  // An exception ends a Bun worker; its pending notes would never come (buffers never reused,
  // the next digest() blocking for a minute).
  started.addEventListener("close", () => workerStopped(started));
  started.unref();
  worker = started;
  return started;
}

/** A ContentDigest whose hashing runs on the digest worker. */
export function threadedContentDigest(): ContentDigest {
  const thread = theWorker();
  const id = nextId++;
  let sent = 0;
  let consumed = 0;
  let waiters: Array<{ count: number; resolve: () => void }> = [];
  let closed = false;
  let lost = false;
  const shared = new SharedArrayBuffer(4 + 32);
  const consumedThrough = (count: number) => {
    consumed = Math.max(consumed, count);
    const ready = waiters.filter((waiter) => waiter.count <= consumed);
    waiters = waiters.filter((waiter) => waiter.count > consumed);
    for (const waiter of ready) waiter.resolve();
    // A closed digest still hears of the updates sent before close, until the last one.
    if (closed && consumed === sent) listeners.delete(id);
  };
  listeners.set(id, {
    consumed: consumedThrough,
    lost: () => {
      lost = true;
      consumedThrough(sent);
    },
  });
  thread.postMessage({ kind: "open", id } satisfies DigestRequest);
  return {
    update(data) {
      assert(sent - consumed < pendingUpdatesMax, "digest updates in flight within their limit");
      const address = alignedAddressOf(data);
      const inSharedMemory = data.buffer instanceof SharedArrayBuffer;
      sent++;
      if (lost) {
        consumedThrough(sent);
        return;
      }
      const request: DigestRequest = address !== undefined
        ? { kind: "update", id, address, lengthBytes: data.length, ordinal: sent }
        : { kind: "update", id, address: 0, lengthBytes: data.length, ordinal: sent,
          bytes: inSharedMemory ? data : data.slice() };
      thread.postMessage(request);
    },
    settled() {
      if (consumed === sent) return Promise.resolve();
      return new Promise((resolve) => waiters.push({ count: sent, resolve }));
    },
    digest() {
      if (lost) throw new MarsError("io", "the digest worker stopped: a logfile digest is lost");
      const flag = new Int32Array(shared, 0, 1);
      Atomics.store(flag, 0, 0);
      thread.postMessage({ kind: "digest", id, shared } satisfies DigestRequest);
      // Blocks the event loop until the worker caught up: once per logfile (≤ a few batches).
      const outcome = Atomics.wait(flag, 0, 0, digestWaitMsMax);
      assert(outcome !== "timed-out", "the digest worker answers");
      // Every update sent so far was consumed before the digest (their notes may still be on
      // the way): their buffers may be reused now.
      consumedThrough(sent);
      return new Uint8Array(shared, 4, 32).slice();
    },
    close() {
      // Buffers of updates not yet hashed are given back only when settled() resolves, so the
      // notes of those updates are still awaited (the worker hashes them before the close).
      closed = true;
      if (consumed === sent) listeners.delete(id);
      thread.postMessage({ kind: "close", id } satisfies DigestRequest);
    },
  };
}
