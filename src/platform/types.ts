/** The effects the engine may use (time, randomness, disk, network), as interfaces it is handed. */
// Engine code imports only these types from src/platform. Real implementations live beside this
// file; simulated ones live in tests/support, so a seeded test can run the real engine code.

// --- time and randomness ---

export interface TimerHandle {
  cancel(): void;
}

export interface Clock {
  /** Wall-clock milliseconds since the epoch: for stamps that people read, never for ordering. */
  nowMs(): number;
  /** Monotonic milliseconds from an arbitrary origin: for durations, rates and timeouts. */
  monotonicMs(): number;
  /** Calls `callback` once after `delayMs` (monotonic); the handle cancels it. */
  setTimer(delayMs: number, callback: () => void): TimerHandle;
}

export interface Random {
  /** A uniformly distributed integer in [0, 2^32). */
  nextUint32(): number;
}

// --- disk: files and batched I/O ---

export interface OpenOptions {
  /** Create the file when missing. */
  readonly create?: boolean;
  /** Fail when the file exists (with create), or claim a block device exclusively (O_EXCL). */
  readonly exclusive?: boolean;
  readonly readOnly?: boolean;
  /** O_DIRECT: offsets, lengths and buffers must be aligned to the logical block size. */
  readonly direct?: boolean;
}

export interface FileStatus {
  readonly sizeBytes: number;
  readonly isDirectory: boolean;
  readonly isBlockDevice: boolean;
  readonly modifiedMs: number;
}

/** Directory and file-handle operations; data moves through an IoEngine. */
export interface FileSystem {
  open(path: string, options: OpenOptions): Promise<number>;
  close(fd: number): Promise<void>;
  /** Size of an open file, or of a block device. */
  sizeOf(fd: number): Promise<number>;
  truncate(fd: number, sizeBytes: number): Promise<void>;
  /** Status of a path, or undefined when it does not exist. */
  status(path: string): Promise<FileStatus | undefined>;
  /** Entry names in a directory (not paths), sorted. */
  list(directory: string): Promise<string[]>;
  makeDirectory(path: string): Promise<void>;
  rename(fromPath: string, toPath: string): Promise<void>;
  remove(path: string): Promise<void>;
  /** Removes a directory and everything under it; a missing path is no error. */
  removeTree(path: string): Promise<void>;
  /** fsync on a directory, so that creations, renames and removals in it are durable. */
  syncDirectory(path: string): Promise<void>;
  /** Space of the file system holding `path` (statfs): what an unprivileged writer may use. */
  space(path: string): Promise<SpaceStatus>;
}

export interface SpaceStatus {
  /** Bytes still available to this process (statfs f_bavail × f_bsize). */
  readonly freeBytes: number;
  /** Size of the file system (f_blocks × f_bsize). */
  readonly totalBytes: number;
}

export type IoOperation =
  | { readonly kind: "read"; readonly fd: number; readonly offset: number;
      readonly buffer: Uint8Array }
  | { readonly kind: "write"; readonly fd: number; readonly offset: number;
      readonly buffer: Uint8Array }
  | { readonly kind: "fsync"; readonly fd: number; readonly dataOnly: boolean }
  /**
   * fallocate(2), size kept: "punch-hole" deallocates the range, "zero-range" keeps it
   * allocated; either way it reads as zeroes. Fails with EOPNOTSUPP where the file system or
   * device cannot (the caller then writes zeroes), EINVAL on a range a device cannot align.
   */
  | { readonly kind: "fallocate"; readonly fd: number; readonly mode: FallocateMode;
      readonly offset: number; readonly lengthBytes: number };

export type FallocateMode = "punch-hole" | "zero-range";

/**
 * Outcome of one operation. A write or fsync that succeeds is complete (short transfers are
 * retried inside the engine); a read returns fewer bytes than asked only at end of file.
 */
export type IoResult =
  | { readonly ok: true; readonly bytes: number }
  | { readonly ok: false; readonly errno: string; readonly message: string };

export interface SubmitOptions {
  /**
   * Run the operations one after another; the first failure cancels the rest (errno
   * ECANCELED). "These writes, then fdatasync" is an ordered batch.
   */
  readonly ordered?: boolean;
  /**
   * Nobody waits for these in a hurry: the engine may run them on kernel worker threads
   * (io_uring IOSQE_ASYNC) instead of the caller's, where a buffered write would copy into the
   * page cache inline. Results are the same.
   */
  readonly background?: boolean;
}

/** Operations in one `submit` call; more is a caller bug (split the work into batches). */
export const ioBatchOperationsMax = 4096;

/** Batched asynchronous disk I/O: the io_uring engine, its portable fallback, or a simulation. */
export interface IoEngine {
  readonly name: string;
  /** One result per operation, in the order given; never rejects for an I/O error. */
  submit(operations: readonly IoOperation[], options?: SubmitOptions): Promise<IoResult[]>;
  /** Completes or cancels everything in flight, then releases the engine. */
  close(): Promise<void>;
  /**
   * A page-aligned buffer outside the garbage-collected heap, kept for the process's lifetime
   * (allocate once, reuse). Real engines pass such buffers to the kernel without copying and
   * they satisfy O_DIRECT; other buffers are copied. Optional: simulations may omit it.
   */
  allocateBuffer?(sizeBytes: number): Uint8Array;
}

export interface Storage {
  readonly files: FileSystem;
  readonly io: IoEngine;
}

// --- network: byte streams ---

export type Address =
  | { readonly kind: "unix"; readonly path: string }
  | { readonly kind: "tcp"; readonly host: string; readonly port: number };

export interface ConnectionHandlers {
  /** Bytes arrived; `chunk` is only valid during the call (copy what you keep). */
  data(chunk: Uint8Array): void;
  /** The send queue fell below its low-water mark after `write` returned false. */
  drain(): void;
  /** The connection is gone (peer closed, error, or our own end/destroy); called once. */
  closed(error?: Error): void;
}

export interface Connection {
  /** Human-readable peer description for logs. */
  readonly remote: string;
  /**
   * Queues bytes for sending (copied). Returns false once queued bytes exceed the high-water
   * mark: the caller stops producing until `drain`.
   */
  write(data: Uint8Array): boolean;
  readonly queuedBytes: number;
  /** Closes after the queue is sent. */
  end(): void;
  /** Closes at once, dropping the queue. */
  destroy(): void;
  /**
   * Flow control for receiving: stop delivering `data` until `resume` (a few chunks already
   * read may still arrive). Optional: an implementation without it simply never pauses.
   */
  pause?(): void;
  resume?(): void;
}

export interface Listener {
  readonly address: Address;
  close(): void;
}

export interface Network {
  /** Accepts connections; `accept` returns the handlers for each new connection. */
  listen(
    address: Address,
    accept: (connection: Connection) => ConnectionHandlers,
  ): Promise<Listener>;
  connect(address: Address, handlers: ConnectionHandlers): Promise<Connection>;
}

// --- host services the engine needs besides disk and network ---

export interface HeldLock {
  /** Releases the lock (closing its descriptor). */
  release(): Promise<void>;
}

/** Advisory exclusive locks (flock): one engine per home, one user per disk file. */
export interface FileLocks {
  /** Locks `path` (created when missing) or returns undefined when another holder has it. */
  tryLock(path: string): Promise<HeldLock | undefined>;
}

/** Everything the engine needs from the outside world, bundled for injection. */
export interface Platform {
  readonly clock: Clock;
  readonly random: Random;
  readonly storage: Storage;
  readonly network: Network;
}
