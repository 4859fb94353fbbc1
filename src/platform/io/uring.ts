/** The io_uring IoEngine: batches become ring entries, completions come back on the event loop. */
// Flow: submit() queues work and at once drive() moves it into the submission ring (as many as
// slots, ring entries and bounce buffers allow), calls io_uring_enter, reaps what already
// completed → the eventfd wakes us for the rest → completions settle (maybe as the next segment
// of a short transfer) → drive() again. Ordered batches go in as IOSQE_IO_LINK chains.
import { assert } from "../../lib/assert.ts";
import type { IoEngine, IoOperation, IoResult, SubmitOptions } from "../types.ts";
import { AlignedBufferPool, alignedAddressOf, allocateAlignedBuffer } from "./aligned.ts";
import { cancelled, checkBatch, errnoInterrupted } from "./outcome.ts";
import {
  cancelAny, entryFlag, fallocateModeBits, fsyncDataOnly, opcode,
} from "./uring-abi.ts";
import { Ring } from "./uring-ring.ts";
import {
  cancelRest, createBatch, createTask, finish, operationLength, settle, type Batch, type Task,
} from "./uring-task.ts";
import { CompletionWaker } from "./uring-waker.ts";
import { closeDescriptor, createEventFd, type NativeFailure } from "./native.ts";

export interface UringOptions {
  /** Submission ring entries (power of two). */
  readonly queueEntries: number;
  /** Completion ring entries; with fewer than inFlightMax the kernel's overflow list is used. */
  readonly completionEntries: number;
  /** Operations (segments) in the kernel at once. */
  readonly inFlightMax: number;
  /** Bounce buffers for small and large transfers from GC memory. */
  readonly smallBounceSlotsMax: number;
  readonly largeBounceSlotsMax: number;
  /** See RingOptions.cooperative. */
  readonly cooperative?: boolean;
  /**
   * Tests only: rewrites a kernel result (to EAGAIN, EINTR or a short count) before it settles,
   * for unordered operations, whose repetition is harmless.
   */
  readonly injectFault?: (result: number) => number;
}

export const uringDefaults: UringOptions = {
  queueEntries: 256,
  completionEntries: 512,
  inFlightMax: 256,
  smallBounceSlotsMax: 256,
  largeBounceSlotsMax: 16,
};

/** Bounce slot sizes: a transfer from GC memory moves at most this much per segment. */
export const smallBounceBytes = 64 * 1024;
export const largeBounceBytes = 1024 * 1024;
/** A segment from an aligned buffer; the kernel itself caps one read/write just below 2 GiB. */
export const directSegmentBytesMax = 1024 * 1024 * 1024;
/** Operations queued but not yet in the kernel; callers apply backpressure well before this. */
export const queuedOperationsMax = 65536;
/** Submit → reap rounds in one drive before waiting for the eventfd. */
const driveRoundsMax = 64;
/** user_data of the cancel-everything request sent at close; operations use slot numbers. */
const cancelUserData = 0xffffffff;

type Work = Task | Batch;

export class UringEngine implements IoEngine {
  readonly name = "uring";
  private readonly slots: Array<Task | undefined>;
  private readonly freeSlots: number[] = [];
  private inFlightCount = 0;
  private ready: Work[] = [];
  private readyHead = 0;
  private closing = false;
  private ringClosed = false;
  private closed: Promise<void> | undefined;
  private whenIdle: (() => void) | undefined;
  private readonly waker: CompletionWaker;
  private readonly smallPool: AlignedBufferPool;
  private readonly largePool: AlignedBufferPool;
  private readonly onCompletion = (userData: number, result: number) =>
    this.complete(userData, result);

  private constructor(
    private readonly ring: Ring,
    private readonly eventFd: number,
    private readonly options: UringOptions,
  ) {
    assert(options.inFlightMax <= ring.completionEntries || ring.hasNoDrop,
      "completions beyond the CQ size need the kernel's overflow list (IORING_FEAT_NODROP)");
    this.slots = new Array<Task | undefined>(options.inFlightMax).fill(undefined);
    for (let slot = options.inFlightMax - 1; slot >= 0; slot--) this.freeSlots.push(slot);
    this.smallPool = new AlignedBufferPool(smallBounceBytes, options.smallBounceSlotsMax);
    this.largePool = new AlignedBufferPool(largeBounceBytes, options.largeBounceSlotsMax);
    this.waker = new CompletionWaker(eventFd, () => this.drive());
  }

  /** Sets up a ring and its eventfd; the failure names the errno (ENOSYS, EPERM, ENOMEM...). */
  static open(options: UringOptions = uringDefaults): UringEngine | NativeFailure {
    const ring = Ring.open({
      submissionEntries: options.queueEntries,
      completionEntries: options.completionEntries,
      cooperative: options.cooperative,
    });
    if (!(ring instanceof Ring)) return ring;
    const eventFd = createEventFd();
    if (typeof eventFd !== "number") {
      ring.close();
      return eventFd;
    }
    const registered = ring.registerEventFd(eventFd);
    if (registered !== undefined) {
      ring.close();
      closeDescriptor(eventFd);
      return registered;
    }
    try {
      return new UringEngine(ring, eventFd, options);
    } catch (error) {
      ring.close(); // the bounce pools could not be mapped
      closeDescriptor(eventFd);
      throw error;
    }
  }

  allocateBuffer(sizeBytes: number): Uint8Array {
    return allocateAlignedBuffer(sizeBytes);
  }

  submit(operations: readonly IoOperation[], options?: SubmitOptions): Promise<IoResult[]> {
    checkBatch(operations);
    if (this.closing) {
      return Promise.resolve(operations.map(() => cancelled("the engine is closed")));
    }
    if (operations.length === 0) return Promise.resolve([]);
    const queued = this.ready.length - this.readyHead + operations.length;
    assert(queued <= queuedOperationsMax, "queued operations stay within queuedOperationsMax");
    return new Promise<IoResult[]>((resolve) => {
      const batch = createBatch(operations, options?.ordered === true, resolve,
        options?.background === true);
      if (batch.ordered) this.ready.push(batch);
      else for (let index = 0; index < operations.length; index++) {
        this.ready.push(createTask(batch, index));
      }
      // At once, not batched per microtask: batching many submissions into one enter makes the
      // device finish them together and then idle while we refill (a convoy); fio does the same.
      this.drive();
    });
  }

  close(): Promise<void> {
    this.closed ??= this.shutDown();
    return this.closed;
  }

  private async shutDown(): Promise<void> {
    this.closing = true;
    for (let index = this.readyHead; index < this.ready.length; index++) {
      this.cancelWork(this.ready[index]!);
    }
    this.ready = [];
    this.readyHead = 0;
    if (this.inFlightCount > 0) {
      const idle = new Promise<void>((resolve) => (this.whenIdle = resolve));
      this.requestCancelEverything();
      this.drive();
      await idle;
    }
    assert(this.inFlightCount === 0, "nothing is in flight when the ring is torn down");
    this.ringClosed = true;
    await this.waker.stop();
    this.ring.close();
    closeDescriptor(this.eventFd);
    this.smallPool.close();
    this.largePool.close();
  }

  private cancelWork(work: Work): void {
    const why = "the engine closed before it started";
    if ("operation" in work) finish(work.batch, work.index, cancelled(why));
    else cancelRest(work, work.cursor, why);
  }

  /** IORING_ASYNC_CANCEL_ANY: what the kernel can still cancel completes with ECANCELED. */
  private requestCancelEverything(): void {
    if (this.ring.freeEntries === 0) return;
    this.ring.push(opcode.asyncCancel, 0, -1, 0, 0, 0, cancelAny, cancelUserData);
  }

  /** Moves ready work into the ring, submits, reaps; repeats while completions keep coming. */
  private drive(): void {
    if (this.ringClosed) return;
    for (let round = 0; round < driveRoundsMax; round++) {
      this.fillRing();
      if (this.ring.pendingEntries > 0) this.waker.arm();
      const submitted = this.submitPending();
      const reaped = this.ring.reap(this.onCompletion);
      if (reaped > 0) continue;
      if (!submitted && this.inFlightCount === 0) {
        setTimeout(() => this.drive(), 1); // the kernel refused for now (EAGAIN/EBUSY)
      }
      break;
    }
    this.compactReady();
    if (this.inFlightCount > 0) this.waker.arm();
    else if (this.readyHead === this.ready.length) {
      this.waker.idle();
      this.whenIdle?.();
    }
  }

  /** io_uring_enter for what is written; false when the kernel refused (try again later). */
  private submitPending(): boolean {
    for (let attempt = 0; attempt < driveRoundsMax; attempt++) {
      const result = this.ring.submit();
      if (result >= 0) return true;
      if (-result !== errnoInterrupted) return false;
    }
    return false;
  }

  private fillRing(): void {
    while (this.readyHead < this.ready.length) {
      if (this.ring.freeEntries === 0 && !this.submitPending()) return;
      const work = this.ready[this.readyHead]!;
      const started = "operation" in work ? this.startTask(work) : this.startChain(work);
      if (!started) return;
      this.readyHead++;
    }
  }

  private compactReady(): void {
    if (this.readyHead === 0) return;
    if (this.readyHead === this.ready.length) {
      this.ready = [];
      this.readyHead = 0;
    } else if (this.readyHead > 1024 && this.readyHead * 2 > this.ready.length) {
      this.ready = this.ready.slice(this.readyHead);
      this.readyHead = 0;
    }
  }

  /** Puts the task's next segment into the ring; false when a slot, entry or buffer is short. */
  private startTask(task: Task): boolean {
    if (this.freeSlots.length === 0 || this.ring.freeEntries === 0) return false;
    const { operation } = task;
    let address = 0;
    if (operation.kind === "read" || operation.kind === "write") {
      const remaining = operation.buffer.length - task.doneBytes;
      const own = alignedAddressOf(operation.buffer);
      if (own !== undefined) {
        address = own + task.doneBytes;
        task.segmentBytes = Math.min(remaining, directSegmentBytesMax);
      } else {
        const bounced = this.bounce(task, remaining);
        if (bounced === undefined) return false;
        address = bounced;
      }
    }
    const slot = this.freeSlots.pop()!;
    assert(this.slots[slot] === undefined, "a free slot holds no task");
    this.slots[slot] = task;
    this.inFlightCount++;
    this.pushEntry(task, slot, address);
    return true;
  }

  /** Takes a bounce buffer for the next segment (copying data to write); its address. */
  private bounce(task: Task, remaining: number): number | undefined {
    const pool = remaining <= smallBounceBytes ? this.smallPool : this.largePool;
    const buffer = pool.acquire();
    if (buffer === undefined) return undefined;
    const operation = task.operation as Extract<IoOperation, { kind: "read" | "write" }>;
    task.bounce = buffer;
    task.bouncePool = pool;
    task.segmentBytes = Math.min(remaining, pool.slotBytes);
    if (operation.kind === "write") {
      const start = task.doneBytes;
      buffer.set(operation.buffer.subarray(start, start + task.segmentBytes));
    }
    return alignedAddressOf(buffer)!;
  }

  private pushEntry(task: Task, slot: number, address: number): void {
    const { operation } = task;
    const flags = task.batch.background ? entryFlag.async : 0;
    switch (operation.kind) {
      case "fsync":
        task.segmentBytes = 0;
        this.ring.push(opcode.fsync, flags, operation.fd, 0, 0, 0,
          operation.dataOnly ? fsyncDataOnly : 0, slot);
        return;
      case "fallocate":
        // The ABI's layout for it: the length in `addr`, the mode in `len`.
        task.segmentBytes = 0;
        this.ring.push(opcode.fallocate, flags, operation.fd, operation.offset,
          operation.lengthBytes, fallocateModeBits[operation.mode], 0, slot);
        return;
      case "read":
      case "write": {
        const code = operation.kind === "read" ? opcode.read : opcode.write;
        const offset = operation.offset + task.doneBytes;
        this.ring.push(code, flags, operation.fd, offset, address, task.segmentBytes, 0, slot);
        return;
      }
    }
  }

  /**
   * Starts the next linked chain of an ordered batch: consecutive operations, each linked to the
   * next, ending early at a member that needs more than one segment. False if none could start.
   */
  private startChain(batch: Batch): boolean {
    assert(batch.chainPendingCount === 0, "an ordered batch has one chain in flight at most");
    const chain: Task[] = [];
    const continuing = batch.chain[0];
    for (let index = batch.cursor; index < batch.operations.length; index++) {
      const task = chain.length === 0 && continuing?.index === index
        ? continuing : createTask(batch, index);
      const transfer = task.operation.kind === "read" || task.operation.kind === "write";
      if (transfer && operationLength(task.operation) === 0) {
        if (chain.length > 0) break;
        finish(batch, index, { ok: true, bytes: 0 });
        batch.cursor = index + 1;
        continue;
      }
      if (!this.startTask(task)) break;
      if (chain.length > 0) this.ring.linkPrevious();
      chain.push(task);
      const remaining = operationLength(task.operation) - task.doneBytes;
      if (task.segmentBytes < remaining) break;
    }
    if (chain.length === 0) return batch.cursor === batch.operations.length; // keep `continuing`
    batch.chain = chain;
    batch.chainPendingCount = chain.length;
    return true;
  }

  private complete(userData: number, result: number): void {
    if (userData === cancelUserData) return;
    const task = this.slots[userData];
    assert(task !== undefined, "a completion belongs to a task in flight");
    this.slots[userData] = undefined;
    this.freeSlots.push(userData);
    this.inFlightCount--;
    const inject = this.options.injectFault;
    task.outcome = inject !== undefined && !task.batch.ordered ? inject(result) : result;
    this.returnBounce(task);
    if (task.batch.ordered) {
      const batch = task.batch;
      batch.chainPendingCount--;
      if (batch.chainPendingCount === 0) this.settleChain(batch);
    } else if (settle(task, this.closing) === "again") {
      this.ready.push(task);
    }
  }

  /** Copies what a bounced read brought in to the caller's buffer and frees the slot. */
  private returnBounce(task: Task): void {
    const { bounce, bouncePool, operation } = task;
    if (bounce === undefined || bouncePool === undefined) return;
    if (operation.kind === "read" && task.outcome > 0) {
      operation.buffer.set(bounce.subarray(0, task.outcome), task.doneBytes);
    }
    bouncePool.release(bounce);
    task.bounce = undefined;
    task.bouncePool = undefined;
  }

  /**
   * A whole chain is back. Members settle in order; after one that needs another segment or a
   * retry, the kernel cancelled the links that follow, and they run again in the next chain.
   */
  private settleChain(batch: Batch): void {
    let stopped = false;
    let continuing: Task | undefined;
    for (const task of batch.chain) {
      if (stopped) {
        assert(task.outcome === -125, "the kernel cancels the links after a short or failed one");
        continue;
      }
      // The kernel fails a link on any result but the full length, even a read ending at EOF.
      const linkBroken = task.outcome !== task.segmentBytes;
      const step = settle(task, this.closing);
      if (step === "done") {
        batch.cursor = task.index + 1;
        stopped = linkBroken;
      } else if (step === "again") {
        continuing = task;
        stopped = true;
      } else {
        cancelRest(batch, task.index + 1, "an earlier operation in the batch failed");
        stopped = true;
      }
    }
    batch.chain = continuing === undefined ? [] : [continuing];
    if (batch.cursor >= batch.operations.length) return;
    if (this.closing) cancelRest(batch, batch.cursor, "the engine closed");
    else this.ready.push(batch);
  }
}
