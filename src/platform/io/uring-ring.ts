/** One io_uring instance: setup, the mmapped rings as typed arrays, submit and reap. */
// Memory ordering: the kernel reads the submission tail with acquire semantics and writes the
// completion tail with release semantics. We publish the submission tail with Atomics.store only
// after the entries are written, read the completion tail with Atomics.load before reading any
// entry, and publish the completion head with Atomics.store after the last entry was read.
// JavaScript Atomics are sequentially consistent, which is stronger than either side needs.
import { ptr, toArrayBuffer } from "bun:ffi";
import { assert } from "../../lib/assert.ts";
import {
  completionEntryWord, completionEntryWords, completionOffsetWord, enterFlag, entryFlag, feature,
  mapOffset, parametersWord, parametersWords, registerOpcode, setupFlag, submissionEntryWord,
  submissionEntryWords, submissionOffsetWord, submissionRingFlag,
} from "./uring-abi.ts";
import {
  callSystem, closeDescriptor, failure, mapSharedFile, systemCall, unmap, type NativeFailure,
} from "./native.ts";

/** Ring sizes a caller may ask for; the kernel rounds up to powers of two. */
export const ringEntriesMax = 4096;
const twoToThe32 = 2 ** 32;
/** Reap → flush-the-overflow-list passes per reap; what is left waits for the next wake-up. */
const overflowFlushPassesMax = 16;

export interface RingOptions {
  readonly submissionEntries: number;
  /** At least submissionEntries; the kernel's default is twice as many. */
  readonly completionEntries: number;
  /**
   * IORING_SETUP_COOP_TASKRUN | SINGLE_ISSUER: completions wait for our next kernel entry
   * instead of interrupting us. Never DEFER_TASKRUN: it would stall the eventfd loop.
   */
  readonly cooperative?: boolean;
}

interface Mapping {
  readonly address: number;
  readonly sizeBytes: number;
  readonly memory: ArrayBuffer;
}

export class Ring {
  readonly submissionEntries: number;
  readonly completionEntries: number;
  readonly features: number;
  private readonly submissionHead: Uint32Array;
  private readonly submissionTail: Uint32Array;
  private readonly submissionFlags: Uint32Array;
  private readonly submissionMask: number;
  private readonly entries: Uint32Array;
  private readonly completionHead: Uint32Array;
  private readonly completionTail: Uint32Array;
  private readonly completionOverflow: Uint32Array;
  private readonly completionMask: number;
  private readonly completionWords: Uint32Array;
  private readonly completionResults: Int32Array;
  /** Our copy of the submission tail: entries up to here are written, maybe not yet published. */
  private localTail: number;
  /** The submission tail the kernel can see. */
  private publishedTail: number;
  private closed = false;

  private constructor(
    readonly fd: number,
    parameters: Uint32Array,
    private readonly mappings: Mapping[],
  ) {
    const sq = parametersWord.submissionOffsets;
    const cq = parametersWord.completionOffsets;
    const [ringMemory, completionMemory, entryMemory] = [
      mappings[0]!.memory, mappings[mappings.length === 3 ? 1 : 0]!.memory,
      mappings[mappings.length - 1]!.memory,
    ];
    const word = (memory: ArrayBuffer, offset: number) => new Uint32Array(memory, offset, 1);
    this.submissionEntries = parameters[parametersWord.submissionEntries]!;
    this.completionEntries = parameters[parametersWord.completionEntries]!;
    this.features = parameters[parametersWord.features]!;
    this.submissionHead = word(ringMemory, parameters[sq + submissionOffsetWord.head]!);
    this.submissionTail = word(ringMemory, parameters[sq + submissionOffsetWord.tail]!);
    this.submissionFlags = word(ringMemory, parameters[sq + submissionOffsetWord.flags]!);
    this.submissionMask = word(ringMemory, parameters[sq + submissionOffsetWord.ringMask]!)[0]!;
    const arrayOffset = parameters[sq + submissionOffsetWord.array]!;
    const indexArray = new Uint32Array(ringMemory, arrayOffset, this.submissionEntries);
    for (let index = 0; index < this.submissionEntries; index++) indexArray[index] = index;
    this.entries = new Uint32Array(entryMemory, 0, this.submissionEntries * submissionEntryWords);
    this.completionHead = word(completionMemory, parameters[cq + completionOffsetWord.head]!);
    this.completionTail = word(completionMemory, parameters[cq + completionOffsetWord.tail]!);
    this.completionOverflow =
      word(completionMemory, parameters[cq + completionOffsetWord.overflow]!);
    this.completionMask =
      word(completionMemory, parameters[cq + completionOffsetWord.ringMask]!)[0]!;
    const entriesOffset = parameters[cq + completionOffsetWord.entries]!;
    const completionWordCount = this.completionEntries * completionEntryWords;
    this.completionWords = new Uint32Array(completionMemory, entriesOffset, completionWordCount);
    this.completionResults = new Int32Array(completionMemory, entriesOffset, completionWordCount);
    this.localTail = Atomics.load(this.submissionTail, 0);
    this.publishedTail = this.localTail;
    assert(this.submissionMask === this.submissionEntries - 1, "ring sizes are powers of two");
    assert(this.completionMask === this.completionEntries - 1, "ring sizes are powers of two");
  }

  /** io_uring_setup and the three mappings; the failure carries errno (ENOSYS, EPERM, ...). */
  static open(options: RingOptions): Ring | NativeFailure {
    assert(options.submissionEntries > 0, "a ring has entries");
    assert(options.submissionEntries <= ringEntriesMax, "ring entries stay within the limit");
    assert(options.completionEntries >= options.submissionEntries, "CQ at least as large as SQ");
    const parameters = new Uint32Array(parametersWords);
    const cooperative = options.cooperative === true
      ? setupFlag.cooperativeTaskRun | setupFlag.singleIssuer : 0;
    const sizing = setupFlag.completionQueueSize | setupFlag.clamp;
    parameters[parametersWord.flags] = sizing | cooperative;
    parameters[parametersWord.completionEntries] = options.completionEntries;
    const fd = callSystem(systemCall.ioUringSetup, options.submissionEntries, ptr(parameters));
    if (fd < 0) return failure(-fd);
    const mapped = Ring.mapRegions(fd, parameters);
    if (!Array.isArray(mapped)) {
      closeDescriptor(fd);
      return mapped;
    }
    return new Ring(fd, parameters, mapped);
  }

  private static mapRegions(fd: number, parameters: Uint32Array): Mapping[] | NativeFailure {
    const submissionEntries = parameters[parametersWord.submissionEntries]!;
    const completionEntries = parameters[parametersWord.completionEntries]!;
    const sq = parametersWord.submissionOffsets;
    const cq = parametersWord.completionOffsets;
    const submissionRingBytes =
      parameters[sq + submissionOffsetWord.array]! + submissionEntries * 4;
    const completionRingBytes = parameters[cq + completionOffsetWord.entries]! +
      completionEntries * completionEntryWords * 4;
    const single = (parameters[parametersWord.features]! & feature.singleMmap) !== 0;
    const regions: Array<[number, number]> = single
      ? [[mapOffset.submissionRing, Math.max(submissionRingBytes, completionRingBytes)]]
      : [[mapOffset.submissionRing, submissionRingBytes],
        [mapOffset.completionRing, completionRingBytes]];
    regions.push([mapOffset.submissionEntries, submissionEntries * submissionEntryWords * 4]);
    const mappings: Mapping[] = [];
    for (const [offset, sizeBytes] of regions) {
      const address = mapSharedFile(fd, offset, sizeBytes);
      if (typeof address !== "number") {
        for (const mapping of mappings) unmap(mapping.address, mapping.sizeBytes);
        return address;
      }
      mappings.push({ address, sizeBytes, memory: toArrayBufferOf(address, sizeBytes) });
    }
    return mappings;
  }

  /** Submission entries we may still write before the kernel consumes some. */
  get freeEntries(): number {
    return this.submissionEntries - this.pendingEntries;
  }

  /** Entries written but not yet consumed by the kernel. */
  get pendingEntries(): number {
    return (this.localTail - Atomics.load(this.submissionHead, 0)) >>> 0;
  }

  /** Writes one submission entry (not yet visible to the kernel: see `submit`). */
  push(
    code: number, flags: number, fd: number, offset: number,
    address: number, lengthBytes: number, operationFlags: number, userData: number,
  ): void {
    assert(!this.closed, "a closed ring takes no entries");
    assert(this.freeEntries > 0, "a submission entry is free");
    const words = this.entries;
    const base = (this.localTail & this.submissionMask) * submissionEntryWords;
    words.fill(0, base, base + submissionEntryWords);
    words[base + submissionEntryWord.opcodeAndFlags] = code | (flags << 8);
    words[base + submissionEntryWord.fd] = fd;
    words[base + submissionEntryWord.offsetLow] = offset % twoToThe32;
    words[base + submissionEntryWord.offsetHigh] = Math.floor(offset / twoToThe32);
    words[base + submissionEntryWord.addressLow] = address % twoToThe32;
    words[base + submissionEntryWord.addressHigh] = Math.floor(address / twoToThe32);
    words[base + submissionEntryWord.length] = lengthBytes;
    words[base + submissionEntryWord.operationFlags] = operationFlags;
    words[base + submissionEntryWord.userDataLow] = userData;
    this.localTail = (this.localTail + 1) >>> 0;
  }

  /** Sets IOSQE_IO_LINK on the entry before the last one: the kernel runs the two in order. */
  linkPrevious(): void {
    assert(((this.localTail - this.publishedTail) >>> 0) >= 2, "both entries are unpublished");
    const previous = (this.localTail - 2) >>> 0;
    const base = (previous & this.submissionMask) * submissionEntryWords;
    this.entries[base + submissionEntryWord.opcodeAndFlags]! |= entryFlag.ioLink << 8;
  }

  /**
   * Publishes the written entries and tells the kernel about them (io_uring_enter without
   * waiting). Returns the number consumed, or a negative errno (EAGAIN/EBUSY/EINTR: try again).
   */
  submit(): number {
    assert(!this.closed, "a closed ring submits nothing");
    Atomics.store(this.submissionTail, 0, this.localTail);
    this.publishedTail = this.localTail;
    const count = this.pendingEntries;
    if (count === 0) return 0;
    return callSystem(systemCall.ioUringEnter, this.fd, count, 0, 0, 0, 0);
  }

  /**
   * Hands every posted completion to `handle` (user data, result), flushing the kernel's
   * overflow backlog when the completion ring ran full. Returns how many were reaped.
   */
  reap(handle: (userData: number, result: number) => void): number {
    let reaped = 0;
    for (let pass = 0; pass < overflowFlushPassesMax; pass++) {
      reaped += this.reapPosted(handle);
      const flags = Atomics.load(this.submissionFlags, 0);
      if ((flags & submissionRingFlag.completionOverflow) === 0) break;
      // The kernel kept completions that did not fit; entering with GETEVENTS moves them in.
      callSystem(systemCall.ioUringEnter, this.fd, 0, 0, enterFlag.getEvents, 0, 0);
    }
    assert(Atomics.load(this.completionOverflow, 0) === 0, "the kernel dropped no completion");
    return reaped;
  }

  private reapPosted(handle: (userData: number, result: number) => void): number {
    const tail = Atomics.load(this.completionTail, 0);
    let head = Atomics.load(this.completionHead, 0);
    let reaped = 0;
    while (head !== tail) {
      const base = (head & this.completionMask) * completionEntryWords;
      const userData = this.completionWords[base + completionEntryWord.userDataLow]!;
      const result = this.completionResults[base + completionEntryWord.result]!;
      head = (head + 1) >>> 0;
      reaped++;
      handle(userData, result);
    }
    Atomics.store(this.completionHead, 0, head);
    return reaped;
  }

  /** IORING_REGISTER_EVENTFD: the kernel bumps `eventFd` whenever it posts a completion. */
  registerEventFd(eventFd: number): NativeFailure | undefined {
    const argument = new Int32Array([eventFd]);
    const code = registerOpcode.eventFd;
    const result = callSystem(systemCall.ioUringRegister, this.fd, code, ptr(argument), 1);
    return result < 0 ? failure(-result) : undefined;
  }

  get hasNoDrop(): boolean {
    return (this.features & feature.noDrop) !== 0;
  }

  /** Unmaps the rings and closes the ring fd; nothing may be in flight any more. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const mapping of this.mappings) unmap(mapping.address, mapping.sizeBytes);
    closeDescriptor(this.fd);
  }
}

function toArrayBufferOf(address: number, sizeBytes: number): ArrayBuffer {
  return toArrayBuffer(address, 0, sizeBytes);
}
