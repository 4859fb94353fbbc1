/** The serving side of log shipping: streams a resource's durable logfile bytes to a fetcher. */
import { assert } from "../lib/assert.ts";
import { isMarsError, MarsError, type ErrorCode } from "../lib/errors.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import type { LogPosition } from "../log/position.ts";
import { crc32 } from "../platform/hash.ts";
import { zstdCompress } from "../platform/compress.ts";
import type { Clock, Storage, TimerHandle } from "../platform/types.ts";
import type { Session, SessionHandlers } from "../transport/channel.ts";
import { logChunkBytesMax, type Message } from "../transport/messages.ts";
import { localLogfiles, type LocalLogfile } from "./log-files.ts";
import { RecordCursor, readExactly } from "./record-cursor.ts";
import type { TailWatcher } from "./tail-watcher.ts";

/** Bytes sent but not yet acknowledged as durable by the fetcher (the pipelining window). */
export const fetchWindowBytesMax = 64 * 1024 * 1024;

/**
 * The window a fetcher asks for: an unlimited one takes the server's default (0); a limited
 * one a quarter second of its rate, so a burst cannot arrive much faster than the limit.
 */
export function windowForRate(rateBytesPerSecondMax: number): number {
  if (rateBytesPerSecondMax <= 0) return 0;
  return Math.max(logChunkBytesMax, Math.floor(rateBytesPerSecondMax / 4));
}
/** How often the server tells an active fetcher its durable end and what is pending. */
export const statusIntervalMs = 250;
/** How often it looks while the stream is idle; an unchanged status is repeated this often. */
export const statusIdleIntervalMs = 1000;
export const statusKeepaliveMs = 5000;
/** Later logfiles summed into the pending-bytes estimate (beyond them it is a lower bound). */
export const pendingLogfilesMax = 64;
/** Compress a chunk only when zstd saves at least this fraction. */
const compressionWorthwhile = 0.9;
/** After a chunk that did not compress, this many are sent without trying (saves CPU). */
export const compressionSkipChunks = 16;

/** How much of one logfile may be served. */
export interface LogExtent {
  readonly lengthBytes: number;
  /** The file will not grow any more: the fetcher may move on to the next one. */
  readonly finished: boolean;
}

/** A resource's logfiles as this host may serve them (only ever durable bytes). */
export interface LogSource {
  readonly directory: string;
  /** The newest durable position here. */
  durableEnd(): LogPosition;
  /** What may be read of logfile `sequence`; undefined: nothing yet; "gone": not here. */
  extent(sequence: number): Promise<LogExtent | undefined | "gone">;
  /** The local logfile numbered `sequence`, if there is one. */
  logfile(sequence: number): Promise<LocalLogfile | undefined>;
}

/** A source over a directory whose newest durable end another component knows. */
export function directorySource(
  storage: Storage, directory: string, durableEnd: () => LogPosition,
  finishedLength: (sequence: number) => number | undefined = () => undefined,
): LogSource {
  let listing = new Map<number, LocalLogfile>();
  const lengths = new Map<number, number>();
  const logfile = async (sequence: number) => {
    if (!listing.has(sequence)) listing = await localLogfiles(storage, directory);
    return listing.get(sequence);
  };
  return {
    directory, durableEnd, logfile,
    async extent(sequence) {
      const end = durableEnd();
      if (sequence > end.sequence) return undefined;
      if (sequence === end.sequence) {
        return { lengthBytes: end.offsetBytes, finished: finishedLength(sequence) !== undefined };
      }
      const known = lengths.get(sequence) ?? finishedLength(sequence);
      if (known !== undefined) return { lengthBytes: known, finished: true };
      const file = await logfile(sequence);
      if (!file) return "gone";
      const status = await storage.files.status(file.path);
      if (!status) return "gone";
      lengths.set(sequence, status.sizeBytes);
      return { lengthBytes: status.sizeBytes, finished: true };
    },
  };
}

export interface LogServerContext {
  readonly storage: Storage;
  readonly clock: Clock;
  /** Wakes streams waiting at the tail of a growing log. */
  readonly tail: TailWatcher;
  /** The source of `resource` on this host, or undefined when this host does not serve it. */
  source(resource: string): LogSource | undefined;
  log(level: "info" | "warn", event: string, fields: Record<string, unknown>): void;
}

/** Serves one "log" session: one resource, from one position on, following the tail. */
export function serveLogSession(session: Session, context: LogServerContext): SessionHandlers {
  const stream = new ServedStream(session, context);
  return {
    message: (message) => stream.onMessage(message),
    drain: () => stream.onDrain(),
    closed: () => stream.stop(),
  };
}

class ServedStream {
  private source: LogSource | undefined;
  private resource = "";
  private sequence = 0;
  private offset = 0;
  private file: { sequence: number; fd: number; path: string } | undefined;
  private sentBytes = 0;
  private ackedBytes = 0;
  private windowBytes = fetchWindowBytesMax;
  private pumping = false;
  private blocked = false;
  private stopped = false;
  private cancelTailWait: (() => void) | undefined;
  private statusTimer: TimerHandle | undefined;
  private lastStatus = { text: "", atMs: 0 };
  private chunksUntilCompressionTry = 0;

  constructor(private readonly session: Session, private readonly context: LogServerContext) {}

  onMessage(message: Message): void {
    if (this.stopped) return;
    if (message.type === "log-fetch" && this.source === undefined) {
      void this.begin(message).catch((error: unknown) => this.failed(error));
    } else if (message.type === "log-ack" && this.source !== undefined) {
      if (message.bytes < this.ackedBytes || message.bytes > this.sentBytes) {
        return this.refuse("protocol", "acknowledged bytes outside what was sent");
      }
      this.ackedBytes = message.bytes;
      this.kick();
    } else if (message.type !== "heartbeat") {
      this.refuse("protocol", `unexpected '${message.type}' on a log channel`);
    }
  }

  onDrain(): void {
    this.blocked = false;
    this.kick();
  }

  stop(): void {
    this.stopped = true;
    this.cancelTailWait?.();
    this.statusTimer?.cancel();
    void this.closeFile();
  }

  private async begin(request: Extract<Message, { type: "log-fetch" }>): Promise<void> {
    const source = this.context.source(request.resource);
    if (!source) return this.refuse("not-found", `resource '${request.resource}' not served`);
    this.windowBytes = request.windowBytes === 0 ? fetchWindowBytesMax
      : Math.min(fetchWindowBytesMax, Math.max(logChunkBytesMax, request.windowBytes));
    const local = await source.logfile(request.sequence);
    if (local && request.origin !== "" && local.origin !== request.origin) {
      return this.refuse("split-brain", `logfile ${request.sequence} was written by ` +
        `${local.origin} here, by ${request.origin} there`);
    }
    const differs = await this.tailDiffers(source, request);
    if (differs) return this.refuse("split-brain", differs);
    this.resource = request.resource;
    this.sequence = request.sequence;
    this.offset = request.offset;
    if (request.verify) {
      const problem = await this.verifyFrom(source, request.sequence, request.offset);
      if (problem) return this.refuse("defective-log", problem);
    }
    this.source = source;
    this.context.log("info", "log-stream-started", {
      peer: this.session.peer, resource: this.resource, sequence: this.sequence,
      offset: this.offset,
    });
    this.sendStatus();
    this.kick();
  }

  /**
   * Whether the fetcher's copy differs from ours just before where it resumes: a history that
   * diverged inside one logfile would otherwise be continued with our bytes.
   */
  private async tailDiffers(
    source: LogSource, request: Extract<Message, { type: "log-fetch" }>,
  ): Promise<string | undefined> {
    const { tail, offset, sequence } = request;
    if (tail.length === 0 || tail.length > offset) return undefined;
    const file = await source.logfile(sequence);
    const extent = await source.extent(sequence);
    if (!file || extent === undefined || extent === "gone" || extent.lengthBytes < offset) {
      return undefined;
    }
    const ours = new Uint8Array(tail.length);
    const fd = await this.context.storage.files.open(file.path, { readOnly: true });
    try {
      await readExactly(this.context.storage, fd, file.path, offset - tail.length, ours);
    } finally {
      await this.context.storage.files.close(fd);
    }
    if (ours.every((byte, index) => byte === tail[index])) return undefined;
    return `logfile ${sequence}: the copies differ before offset ${offset} (diverged histories)`;
  }

  /** Checks this host's own copy from `offset` to its durable end before re-serving it. */
  private async verifyFrom(source: LogSource, sequence: number, offset: number) {
    const file = await source.logfile(sequence);
    const extent = await source.extent(sequence);
    if (!file || extent === undefined || extent === "gone") return undefined;
    const cursor = await RecordCursor.open(this.context.storage, file.path,
      Math.max(offset, logfileHeaderBytes));
    try {
      for (;;) {
        const step = await cursor.next(extent.lengthBytes);
        if (step.kind === "incomplete") return undefined;
        if (step.kind === "defect") {
          const { offset: at, reason } = step.defect;
          return `${file.path}: offset ${at}: ${reason} (at the source)`;
        }
      }
    } finally {
      await cursor.close();
    }
  }

  private kick(): void {
    if (this.pumping || this.stopped || this.source === undefined) return;
    this.pumping = true;
    this.cancelTailWait?.();
    this.cancelTailWait = undefined;
    void this.pump().catch((error: unknown) => this.failed(error))
      .finally(() => { this.pumping = false; });
  }

  /** Sends while the window, the socket and the source allow; then waits for an event. */
  private async pump(): Promise<void> {
    const source = this.source!;
    while (!this.stopped && !this.blocked) {
      const room = this.windowBytes - (this.sentBytes - this.ackedBytes);
      assert(room >= 0, "bytes in flight within the fetch window");
      if (room === 0) return;
      const extent = await source.extent(this.sequence);
      if (extent === "gone") {
        return this.refuse("not-found", `logfile ${this.sequence} of '${this.resource}' is ` +
          "not here any more (a full sync is needed)");
      }
      if (extent !== undefined && this.offset > extent.lengthBytes) {
        return this.refuse("split-brain", `the fetcher's copy of logfile ${this.sequence} is ` +
          `longer (${this.offset}) than the source's (${extent.lengthBytes})`);
      }
      if (extent === undefined || (this.offset === extent.lengthBytes && !extent.finished)) {
        this.cancelTailWait = this.context.tail.wait(() => source.durableEnd(), () => {
          // The log grew: the fetcher learns the new end at once (wait-sync's target there).
          this.sendStatus(false);
          this.kick();
        });
        return;
      }
      if (this.offset === extent.lengthBytes) {
        this.session.send({
          type: "log-finished", sequence: this.sequence, lengthBytes: extent.lengthBytes,
        });
        await this.closeFile();
        this.sequence++;
        this.offset = 0;
        continue;
      }
      const length = Math.min(logChunkBytesMax, extent.lengthBytes - this.offset, room);
      await this.sendChunk(source, length);
    }
  }

  private async sendChunk(source: LogSource, length: number): Promise<void> {
    const file = await this.openFile(source);
    const raw = new Uint8Array(length);
    await readExactly(this.context.storage, file.fd, file.path, this.offset, raw);
    let packed: Uint8Array = raw;
    if (this.chunksUntilCompressionTry > 0) this.chunksUntilCompressionTry--;
    else packed = zstdCompress(raw);
    const compressed = packed !== raw && packed.length < raw.length * compressionWorthwhile;
    if (packed !== raw && !compressed) this.chunksUntilCompressionTry = compressionSkipChunks;
    const accepted = this.session.send({
      type: "log-data", sequence: this.sequence, offset: this.offset, compressed,
      bytes: compressed ? packed : raw, rawBytes: length, checksum: crc32(raw),
    });
    this.offset += length;
    this.sentBytes += length;
    if (!accepted) this.blocked = true;
  }

  private async openFile(source: LogSource) {
    if (this.file?.sequence === this.sequence) return this.file;
    await this.closeFile();
    const local = await source.logfile(this.sequence);
    if (!local) throw new MarsError("not-found", `logfile ${this.sequence} is not here`);
    const fd = await this.context.storage.files.open(local.path, { readOnly: true });
    this.file = { sequence: this.sequence, fd, path: local.path };
    return this.file;
  }

  private async closeFile(): Promise<void> {
    const file = this.file;
    this.file = undefined;
    if (file) await this.context.storage.files.close(file.fd);
  }

  /**
   * Tells the fetcher the durable end here and how many bytes it still lacks: when that changed
   * (looked at every 250 ms while bytes are in flight, every second when idle), and every 5 s
   * anyway, so the fetcher notices a dead connection.
   */
  private sendStatus(reschedule = true): void {
    if (this.stopped || !this.source) return;
    const source = this.source;
    void this.pendingBytes(source).then((pendingBytes) => {
      const end = source.durableEnd();
      const text = `${end.sequence}@${end.offsetBytes}+${pendingBytes}`;
      const now = this.context.clock.monotonicMs();
      if (text === this.lastStatus.text && now - this.lastStatus.atMs < statusKeepaliveMs) {
        return;
      }
      this.lastStatus = { text, atMs: now };
      this.session.send({
        type: "log-status", sequence: end.sequence, durableOffset: end.offsetBytes, pendingBytes,
      });
    }, (error: unknown) => this.failed(error)).finally(() => {
      if (this.stopped || !reschedule) return;
      const active = this.sentBytes > this.ackedBytes;
      this.statusTimer = this.context.clock.setTimer(
        active ? statusIntervalMs : statusIdleIntervalMs, () => this.sendStatus());
    });
  }

  private async pendingBytes(source: LogSource): Promise<number> {
    let pending = this.sentBytes - this.ackedBytes;
    const end = source.durableEnd();
    const last = Math.min(end.sequence, this.sequence + pendingLogfilesMax);
    for (let sequence = this.sequence; sequence <= last; sequence++) {
      const extent = await source.extent(sequence);
      if (extent === undefined || extent === "gone") break;
      pending += extent.lengthBytes - (sequence === this.sequence ? this.offset : 0);
    }
    return Math.max(0, pending);
  }

  private refuse(code: ErrorCode, reason: string): void {
    if (this.stopped) return;
    this.context.log("warn", "log-stream-refused", {
      peer: this.session.peer, resource: this.resource, code, reason,
    });
    this.session.send({ type: "refusal", code, reason });
    this.stop();
    this.session.close();
  }

  private failed(error: unknown): void {
    if (!isMarsError(error)) throw error;
    this.refuse(error.code, error.message);
  }
}
