/** A simulated disk (FileSystem + IoEngine) that crashes the way a page cache can, seeded. */
import { assert } from "../../src/lib/assert.ts";
import { MarsError } from "../../src/lib/errors.ts";
import type {
  FileStatus, FileSystem, IoEngine, IoOperation, IoResult, OpenOptions, Random, Storage,
  SubmitOptions,
} from "../../src/platform/types.ts";

/** Granularity at which a crash tears a write. */
export const simulatedSectorBytes = 512;
/** O_DIRECT reads and writes must start and end on this (the logical block size): else EINVAL. */
export const simulatedDirectBlockBytes = 4096;

/** Bytes of a file with spare capacity, so appends do not copy the whole file every time. */
class Bytes {
  buffer = new Uint8Array(0);
  size = 0;

  clone(): Bytes {
    const copy = new Bytes();
    copy.buffer = this.buffer.slice(0, this.size);
    copy.size = this.size;
    return copy;
  }
  write(offset: number, data: Uint8Array): void {
    this.resize(Math.max(this.size, offset + data.length));
    this.buffer.set(data, offset);
  }
  resize(size: number): void {
    if (size > this.buffer.length) {
      const grown = new Uint8Array(Math.max(size, this.buffer.length * 2, 4096));
      grown.set(this.buffer.subarray(0, this.size));
      this.buffer = grown;
    }
    if (size < this.size) this.buffer.fill(0, size, this.size);
    this.size = size;
  }
  read(offset: number, target: Uint8Array): number {
    const count = Math.max(0, Math.min(target.length, this.size - offset));
    target.set(this.buffer.subarray(offset, offset + count));
    return count;
  }
}

type DataOperation =
  | { readonly kind: "write"; readonly offset: number; readonly data: Uint8Array }
  | { readonly kind: "truncate"; readonly size: number };

interface Inode {
  readonly id: number;
  current: Bytes;
  durable: Bytes;
  /** Changes since the last fsync, in order; a crash keeps any subset, maybe torn. */
  pending: DataOperation[];
}

type NameOperation =
  | { readonly kind: "link"; readonly name: string; readonly inode: Inode }
  | { readonly kind: "unlink"; readonly name: string };

interface Directory {
  current: Map<string, Inode>;
  durable: Map<string, Inode>;
  /** Creations, renames and removals since the last syncDirectory; a crash keeps a prefix. */
  pending: NameOperation[];
}

interface Submission {
  readonly operations: readonly IoOperation[];
  readonly ordered: boolean;
  readonly results: IoResult[];
  readonly resolve: (results: IoResult[]) => void;
}

function ioFailure(code: "io" | "not-found", errno: string, message: string): MarsError {
  return new MarsError(code, message, { details: { errno } });
}

/**
 * Files live in directories (created durably by makeDirectory). A crash loses every change not
 * made durable: data not fsynced (each unsynced write is kept, dropped or torn at sector
 * granularity, independently, as a page cache may write back any subset), and name changes
 * not followed by syncDirectory (a random prefix of them survives, as a journal would keep).
 * With `manualIo`, submissions wait until the test calls `step()`: the test chooses when each
 * operation happens, so it can crash between any two of them.
 */
export class SimulatedStorage implements Storage {
  readonly files: FileSystem;
  readonly io: IoEngine;
  private readonly directories: Map<string, Directory>;
  private readonly descriptors = new Map<number, Inode>();
  private queue: Submission[] = [];
  private nextDescriptor = 3;
  private nextInode = 1;
  /** Returns an errno to make an operation fail (fault injection); not inherited on reboot. */
  injectFault: ((operation: IoOperation) => string | undefined) | undefined;
  /** After a crash this instance is the dead machine: its calls never complete. */
  private dead = false;
  /** The simulated file system's size; `space` reports it minus every file's current size. */
  capacityBytes = 2 ** 40;
  /** Descriptors opened with O_DIRECT: their reads and writes must cover whole blocks. */
  private readonly directDescriptors = new Set<number>();
  /** Refuse O_DIRECT opens with EINVAL, as tmpfs does (kept across crashes). */
  refuseDirect = false;
  /** Writes performed through O_DIRECT descriptors (tests check which path ran). */
  directWrites = 0;

  constructor(
    private readonly random: Random,
    private readonly manualIo = false,
    directories?: Map<string, Directory>,
  ) {
    this.directories = directories ?? new Map([["/", newDirectory()]]);
    this.files = this.fileSystem();
    this.io = this.engine();
  }

  /** The same disk with submissions that wait for `step()` (only before any I/O is queued). */
  withManualIo(): SimulatedStorage {
    assert(this.queue.length === 0 && !this.dead, "switch modes on an idle machine");
    this.dead = true;
    const manual = new SimulatedStorage(this.random, true, this.directories);
    manual.nextInode = this.nextInode;
    manual.refuseDirect = this.refuseDirect;
    return manual;
  }

  /** Submissions waiting for `step()` (manual mode). */
  get pendingSubmissions(): number {
    return this.queue.length;
  }

  /** Performs the next operation of one randomly chosen waiting submission. */
  step(): boolean {
    if (this.queue.length === 0) return false;
    this.stepAt(this.random.nextUint32() % this.queue.length);
    return true;
  }

  private stepAt(index: number): void {
    const submission = this.queue[index]!;
    const operation = submission.operations[submission.results.length]!;
    const failed = submission.ordered && submission.results.some((result) => !result.ok);
    submission.results.push(failed
      ? { ok: false, errno: "ECANCELED", message: "cancelled: an earlier operation failed" }
      : this.perform(operation));
    if (submission.results.length === submission.operations.length) {
      this.queue.splice(index, 1);
      submission.resolve(submission.results);
    }
  }

  /**
   * The machine loses power: unsynced state is resolved as described above. This instance dies
   * (waiting submissions and later calls never complete, so code still running from before the
   * crash cannot touch the disk); the returned instance is the rebooted machine.
   */
  crash(): SimulatedStorage {
    assert(!this.dead, "a dead machine cannot crash again");
    this.dead = true;
    for (const directory of this.directories.values()) {
      const keep = this.random.nextUint32() % (directory.pending.length + 1);
      for (const operation of directory.pending.slice(0, keep)) {
        applyName(directory.durable, operation);
      }
      directory.pending = [];
      directory.current = new Map(directory.durable);
    }
    for (const inode of this.liveInodes()) {
      for (const operation of inode.pending) this.persistSome(inode.durable, operation);
      inode.pending = [];
      inode.current = inode.durable.clone();
    }
    this.descriptors.clear();
    this.directDescriptors.clear();
    this.queue = [];
    const rebooted = new SimulatedStorage(this.random, this.manualIo, this.directories);
    rebooted.nextInode = this.nextInode;
    rebooted.refuseDirect = this.refuseDirect;
    return rebooted;
  }

  /** The current content of a file (what a read would return now). */
  contentOf(path: string): Uint8Array {
    const inode = this.lookup(path);
    if (!inode) throw ioFailure("not-found", "ENOENT", `${path}: no such file`);
    return inode.current.buffer.slice(0, inode.current.size);
  }

  // --- internal ---

  private liveInodes(): Set<Inode> {
    const live = new Set<Inode>();
    for (const directory of this.directories.values()) {
      for (const inode of directory.durable.values()) live.add(inode);
    }
    return live;
  }

  private persistSome(durable: Bytes, operation: DataOperation): void {
    const choice = this.random.nextUint32() % 3;
    if (choice === 0) return;
    if (operation.kind === "truncate" || choice === 1) {
      applyData(durable, operation);
      return;
    }
    const { offset, data } = operation;
    for (let start = 0; start < data.length; start += simulatedSectorBytes) {
      if (this.random.nextUint32() % 2 === 0) continue;
      const end = Math.min(data.length, start + simulatedSectorBytes);
      durable.write(offset + start, data.subarray(start, end));
    }
  }

  private perform(operation: IoOperation): IoResult {
    const inode = this.descriptors.get(operation.fd);
    if (!inode) return { ok: false, errno: "EBADF", message: `fd ${operation.fd} is not open` };
    const errno = this.injectFault?.(operation);
    if (errno !== undefined) {
      // A failed write may still have reached the page cache in part; model the worst case
      // where nothing of it is visible, and a failed fsync leaves the data as unsynced as it was.
      return { ok: false, errno, message: `simulated ${errno} on ${operation.kind}` };
    }
    if ((operation.kind === "read" || operation.kind === "write") &&
        this.directDescriptors.has(operation.fd)) {
      const { offset, buffer } = operation;
      if (offset % simulatedDirectBlockBytes !== 0 ||
          buffer.length % simulatedDirectBlockBytes !== 0) {
        return { ok: false, errno: "EINVAL",
          message: `O_DIRECT ${operation.kind} of ${buffer.length} bytes at ${offset}` };
      }
      if (operation.kind === "write") this.directWrites++;
    }
    switch (operation.kind) {
      case "read":
        return { ok: true, bytes: inode.current.read(operation.offset, operation.buffer) };
      case "write": {
        const data = operation.buffer.slice();
        inode.current.write(operation.offset, data);
        inode.pending.push({ kind: "write", offset: operation.offset, data });
        return { ok: true, bytes: data.length };
      }
      case "fsync":
        for (const pending of inode.pending) applyData(inode.durable, pending);
        inode.pending = [];
        return { ok: true, bytes: 0 };
      case "fallocate": {
        // Modelled as a write of zeroes: it too is durable only after the next fsync.
        const data = new Uint8Array(operation.lengthBytes);
        inode.current.write(operation.offset, data);
        inode.pending.push({ kind: "write", offset: operation.offset, data });
        return { ok: true, bytes: 0 };
      }
    }
  }

  private split(path: string): { directory: Directory; name: string; parent: string } {
    const cut = path.lastIndexOf("/");
    const parent = cut <= 0 ? "/" : path.slice(0, cut);
    const directory = this.directories.get(parent);
    if (!directory) throw ioFailure("not-found", "ENOENT", `${parent}: no such directory`);
    return { directory, name: path.slice(cut + 1), parent };
  }

  private lookup(path: string): Inode | undefined {
    const { directory, name } = this.split(path);
    return directory.current.get(name);
  }

  private change(directory: Directory, operation: NameOperation): void {
    applyName(directory.current, operation);
    directory.pending.push(operation);
  }

  private openPath(path: string, options: OpenOptions): number {
    const { directory, name } = this.split(path);
    let inode = directory.current.get(name);
    if (options.direct === true && this.refuseDirect) {
      throw ioFailure("io", "EINVAL", `open ${path}: O_DIRECT not supported`);
    }
    if (inode && options.create && options.exclusive) {
      throw ioFailure("io", "EEXIST", `open ${path}: file exists`);
    }
    if (!inode) {
      if (!options.create) throw ioFailure("not-found", "ENOENT", `open ${path}: no such file`);
      inode = { id: this.nextInode++, current: new Bytes(), durable: new Bytes(), pending: [] };
      this.change(directory, { kind: "link", name, inode });
    }
    const fd = this.nextDescriptor++;
    this.descriptors.set(fd, inode);
    if (options.direct === true) this.directDescriptors.add(fd);
    return fd;
  }

  private inodeOf(fd: number): Inode {
    const inode = this.descriptors.get(fd);
    if (!inode) throw ioFailure("io", "EBADF", `fd ${fd} is not open`);
    return inode;
  }

  /** Runs `action` unless the machine is dead; then the promise never settles. */
  private alive<T>(action: () => T): Promise<T> {
    if (this.dead) return new Promise<T>(() => {});
    try {
      return Promise.resolve(action());
    } catch (error) {
      return Promise.reject(error);
    }
  }

  private fileSystem(): FileSystem {
    const files = this.rawFileSystem();
    const guarded = {} as Record<string, (...args: never[]) => Promise<unknown>>;
    for (const [name, operation] of Object.entries(files)) {
      guarded[name] = (...args: never[]) =>
        this.alive(() => (operation as (...a: never[]) => Promise<unknown>)(...args))
          .then((value) => value);
    }
    return guarded as unknown as FileSystem;
  }

  private rawFileSystem(): FileSystem {
    return {
      open: async (path, options) => this.openPath(path, options),
      close: async (fd) => {
        this.inodeOf(fd);
        this.descriptors.delete(fd);
        this.directDescriptors.delete(fd);
      },
      sizeOf: async (fd) => this.inodeOf(fd).current.size,
      truncate: async (fd, sizeBytes) => {
        const inode = this.inodeOf(fd);
        inode.current.resize(sizeBytes);
        inode.pending.push({ kind: "truncate", size: sizeBytes });
      },
      status: async (path) => this.statusOf(path),
      list: async (path) => {
        const directory = this.directories.get(normalize(path));
        if (!directory) throw ioFailure("not-found", "ENOENT", `list ${path}: no such directory`);
        return [...directory.current.keys(), ...this.subdirectories(normalize(path))].sort();
      },
      makeDirectory: async (path) => {
        const parts = normalize(path).split("/").filter((part) => part.length > 0);
        for (let index = 1; index <= parts.length; index++) {
          const prefix = `/${parts.slice(0, index).join("/")}`;
          if (!this.directories.has(prefix)) this.directories.set(prefix, newDirectory());
        }
      },
      rename: async (fromPath, toPath) => {
        const from = this.split(fromPath);
        const inode = from.directory.current.get(from.name);
        if (!inode) throw ioFailure("not-found", "ENOENT", `rename ${fromPath}: no such file`);
        const to = this.split(toPath);
        this.change(from.directory, { kind: "unlink", name: from.name });
        this.change(to.directory, { kind: "link", name: to.name, inode });
      },
      remove: async (path) => {
        const { directory, name } = this.split(path);
        if (directory.current.has(name)) this.change(directory, { kind: "unlink", name });
      },
      removeTree: async (path) => {
        // Directories are implicit here (made durable at once, as makeDirectory does).
        const root = normalize(path);
        for (const key of [...this.directories.keys()]) {
          if (key === root || key.startsWith(`${root}/`)) this.directories.delete(key);
        }
      },
      syncDirectory: async (path) => {
        const directory = this.directories.get(normalize(path));
        if (!directory) throw ioFailure("not-found", "ENOENT", `fsync ${path}: no directory`);
        directory.durable = new Map(directory.current);
        directory.pending = [];
      },
      space: async () => {
        const inodes = new Set<Inode>();
        for (const directory of this.directories.values()) {
          for (const inode of directory.current.values()) inodes.add(inode);
        }
        let usedBytes = 0;
        for (const inode of inodes) usedBytes += inode.current.size;
        return {
          freeBytes: Math.max(0, this.capacityBytes - usedBytes), totalBytes: this.capacityBytes,
        };
      },
    };
  }

  private subdirectories(parent: string): string[] {
    const prefix = parent === "/" ? "/" : `${parent}/`;
    return [...this.directories.keys()]
      .filter((path) => path.startsWith(prefix) && path !== parent &&
        !path.slice(prefix.length).includes("/"))
      .map((path) => path.slice(prefix.length));
  }

  private statusOf(path: string): FileStatus | undefined {
    const normalized = normalize(path);
    if (this.directories.has(normalized)) {
      return { sizeBytes: 0, isDirectory: true, isBlockDevice: false, modifiedMs: 0 };
    }
    const inode = this.lookup(normalized);
    if (!inode) return undefined;
    return { sizeBytes: inode.current.size, isDirectory: false, isBlockDevice: false,
      modifiedMs: 0 };
  }

  private engine(): IoEngine {
    return {
      name: "simulated",
      submit: (operations: readonly IoOperation[], options?: SubmitOptions) => {
        if (this.dead) return new Promise<IoResult[]>(() => {});
        return new Promise<IoResult[]>((resolve) => {
          const submission = {
            operations, ordered: options?.ordered === true, results: [], resolve,
          };
          if (operations.length === 0) return resolve([]);
          this.queue.push(submission);
          if (!this.manualIo) queueMicrotask(() => this.runSubmission(submission));
        });
      },
      close: async () => {},
    };
  }

  private runSubmission(submission: Submission): void {
    while (this.queue.includes(submission)) this.stepAt(this.queue.indexOf(submission));
  }
}

function newDirectory(): Directory {
  return { current: new Map(), durable: new Map(), pending: [] };
}

function normalize(path: string): string {
  const trimmed = path.replace(/\/+/g, "/").replace(/\/$/, "");
  return trimmed === "" ? "/" : trimmed;
}

function applyName(names: Map<string, Inode>, operation: NameOperation): void {
  if (operation.kind === "link") names.set(operation.name, operation.inode);
  else names.delete(operation.name);
}

function applyData(bytes: Bytes, operation: DataOperation): void {
  if (operation.kind === "write") bytes.write(operation.offset, operation.data);
  else bytes.resize(operation.size);
}
