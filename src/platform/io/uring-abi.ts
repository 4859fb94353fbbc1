/** The io_uring kernel ABI the ring uses: opcodes, flags and struct layouts (linux/io_uring.h). */

export const opcode = {
  nop: 0,
  fsync: 3,
  fallocate: 17,
  asyncCancel: 14,
  read: 22,
  write: 23,
} as const;

/** IOSQE_* flags of a submission entry. */
export const entryFlag = {
  ioLink: 1 << 2,
  /** Always run on an io-wq worker, never inline in io_uring_enter. */
  async: 1 << 4,
} as const;

export const fsyncDataOnly = 1;

/** fallocate(2) mode bits: FALLOC_FL_KEEP_SIZE with PUNCH_HOLE or ZERO_RANGE. */
export const fallocateModeBits = {
  "punch-hole": 0x1 | 0x2,
  "zero-range": 0x1 | 0x10,
} as const;

/** IORING_ASYNC_CANCEL_ANY: cancel every request of the ring (kernel 5.19+). */
export const cancelAny = 1 << 2;

/** IORING_SETUP_* flags. DEFER_TASKRUN is deliberately absent: it stalls the eventfd loop. */
export const setupFlag = {
  completionQueueSize: 1 << 3,
  clamp: 1 << 4,
  cooperativeTaskRun: 1 << 8,
  singleIssuer: 1 << 12,
} as const;

export const feature = {
  singleMmap: 1 << 0,
  noDrop: 1 << 1,
} as const;

export const enterFlag = {
  getEvents: 1 << 0,
} as const;

/** IORING_SQ_* bits in the submission ring's flags word. */
export const submissionRingFlag = {
  completionOverflow: 1 << 1,
} as const;

export const registerOpcode = {
  eventFd: 4,
} as const;

/** mmap offsets that select which region of the ring fd is mapped. */
export const mapOffset = {
  submissionRing: 0,
  completionRing: 0x8000000,
  submissionEntries: 0x10000000,
} as const;

/** struct io_uring_params: 120 bytes, read as 30 u32 words (word index = byte offset / 4). */
export const parametersWords = 30;
export const parametersWord = {
  submissionEntries: 0,
  completionEntries: 1,
  flags: 2,
  features: 5,
  /** struct io_sqring_offsets starts at byte 40. */
  submissionOffsets: 10,
  /** struct io_cqring_offsets starts at byte 80. */
  completionOffsets: 20,
} as const;

/** Word positions inside io_sqring_offsets. */
export const submissionOffsetWord = {
  head: 0,
  tail: 1,
  ringMask: 2,
  ringEntries: 3,
  flags: 4,
  dropped: 5,
  array: 6,
} as const;

/** Word positions inside io_cqring_offsets. */
export const completionOffsetWord = {
  head: 0,
  tail: 1,
  ringMask: 2,
  ringEntries: 3,
  overflow: 4,
  entries: 5,
} as const;

/** struct io_uring_sqe is 64 bytes = 16 u32 words. */
export const submissionEntryWords = 16;
export const submissionEntryWord = {
  /** opcode (byte 0), flags (byte 1), ioprio (bytes 2-3). */
  opcodeAndFlags: 0,
  fd: 1,
  offsetLow: 2,
  offsetHigh: 3,
  addressLow: 4,
  addressHigh: 5,
  length: 6,
  operationFlags: 7,
  userDataLow: 8,
  userDataHigh: 9,
} as const;

/** struct io_uring_cqe is 16 bytes = 4 u32 words: user_data (u64), res (s32), flags (u32). */
export const completionEntryWords = 4;
export const completionEntryWord = {
  userDataLow: 0,
  userDataHigh: 1,
  result: 2,
  flags: 3,
} as const;
