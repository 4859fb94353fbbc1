/** The fetching side of log shipping: copies a peer's logfiles here verbatim, durably, in order. */
import { assert } from "../lib/assert.ts";
import { isMarsError, MarsError } from "../lib/errors.ts";
import { logfileHeaderBytes } from "../log/format.ts";
import type { LogPosition } from "../log/position.ts";
import { crc32 } from "../platform/hash.ts";
import { zstdDecompress } from "../platform/compress.ts";
import type { Address, Network, Storage, TimerHandle, Clock } from "../platform/types.ts";
import type { ChannelContext, Session, SessionHandlers } from "../transport/channel.ts";
import {
  logChunkBytesMax, logTailBytesMax, type Message,
} from "../transport/messages.ts";
import { PeerLink } from "../transport/peer-link.ts";
import type { LocalLogfile } from "./log-files.ts";
import {
  createCopy, joinBytes, lastBytes, loadLocalCopies, recordFinished, truncateCopy, type LocalCopy,
} from "./local-copies.ts";
import { fetchWindowBytesMax, windowForRate, type LogExtent } from "./log-server.ts";
import { readExactly } from "./record-cursor.ts";

/** After a local write failure (disk full, I/O error) fetching is tried again this much later. */
export const fetchRetryDelayMs = 5_000;
/** A session silent this long is dropped and redialed (the source repeats its status every 5 s). */
export const fetchSilenceMsMax = 15_000;

/** Received bytes waiting to be written here; the server's window bounds them. */
export const fetchQueueBytesMax = fetchWindowBytesMax + logChunkBytesMax;

export type FetchState =
  | "paused" | "connecting" | "streaming" | "no-source" | "source-missing"
  | "source-defective" | "split-brain" | "failed";

export interface FetcherOptions {
  readonly resource: string;
  readonly directory: string;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly network: Network;
  readonly context: ChannelContext;
  /** Bytes per second at most (0: unlimited). */
  readonly rateBytesPerSecondMax: number;
  /**
   * The first logfile to fetch when there is no later local copy: the one the replay position
   * names (after a full sync, earlier logfiles are not needed and may be deleted already).
   */
  readonly firstSequence?: number;
  /** New durable bytes are here (the replayer may go on). */
  readonly progressed: () => void;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Record<string, unknown>) => void;
}

export interface FetchSource {
  readonly peer: string;
  readonly address: Address;
}

type QueueItem =
  | { kind: "data"; session: number; sequence: number; offset: number; bytes: Uint8Array }
  | { kind: "finish"; session: number; sequence: number; lengthBytes: number };

export class Fetcher {
  state: FetchState = "paused";
  /** Why the state is what it is (split brain, refusal, failure), "" when nothing is wrong. */
  problem = "";
  source: FetchSource | undefined;
  /** The source's durable end, as last reported. */
  sourceEnd: LogPosition | undefined;
  /** Bytes the source has that are not durable here yet, as last reported. */
  pendingBytes = 0;
  /** Since when the source could not be reached (undefined while a session is open). */
  unreachableSinceMs: number | undefined;
  /** Bytes made durable here since start (for rates). */
  syncedBytesTotal = 0;
  private readonly copies = new Map<number, LocalCopy>();
  /** The logfile being fetched and how much of it has arrived (queued or written). */
  private sequence = 1;
  private receivedBytes = 0;
  private readonly queue: QueueItem[] = [];
  private queuedBytes = 0;
  private writing = false;
  private link: PeerLink | undefined;
  private session: Session | undefined;
  private sessionNumber = 0;
  private sessionAckedBytes = 0;
  private sessionSyncedBytes = 0;
  private ackTimer: TimerHandle | undefined;
  private rateWindowStartMs = 0;
  private rateWindowBytes = 0;
  private verifyNext = false;
  /** The last bytes (≤ logTailBytesMax) before `receivedBytes` of the logfile being fetched. */
  private tail: Uint8Array = new Uint8Array(0);
  private lastHeardMs = 0;
  private failedAtMs = 0;
  private watchdog: TimerHandle | undefined;

  constructor(private readonly options: FetcherOptions) {}

  /** Loads the local copies: a torn newest one is cut back, a finished one not asked for. */
  async load(): Promise<void> {
    for (const copy of await loadLocalCopies(this.options.storage, this.options.directory)) {
      this.copies.set(copy.sequence, copy);
    }
    this.sequence = Math.max(this.options.firstSequence ?? 1, ...this.copies.keys());
    if (this.copies.get(this.sequence)?.finished) this.sequence++;
    this.receivedBytes = this.copies.get(this.sequence)?.syncedBytes ?? 0;
    await this.loadTail();
  }

  /** Reads the tail of the copy being fetched (after a start or a repair). */
  private async loadTail(): Promise<void> {
    const copy = this.copies.get(this.sequence);
    const length = Math.min(logTailBytesMax, this.receivedBytes);
    this.tail = new Uint8Array(length);
    if (!copy || length === 0) return;
    const fd = await this.options.storage.files.open(copy.path, { readOnly: true });
    try {
      await readExactly(this.options.storage, fd, copy.path, this.receivedBytes - length,
        this.tail);
    } finally {
      await this.options.storage.files.close(fd);
    }
  }

  /** Where fetching stands: the end of what is durable here. */
  get fetchedEnd(): LogPosition {
    const copy = this.copies.get(this.sequence);
    if (copy) return { sequence: copy.sequence, offsetBytes: copy.syncedBytes };
    const previous = this.copies.get(this.sequence - 1);
    if (previous) return { sequence: previous.sequence, offsetBytes: previous.syncedBytes };
    return { sequence: this.sequence, offsetBytes: 0 };
  }

  /** What the replayer may read of logfile `sequence` here: durable bytes only. */
  extent(sequence: number): LogExtent | undefined {
    const copy = this.copies.get(sequence);
    if (!copy || copy.syncedBytes < logfileHeaderBytes) return undefined;
    return { lengthBytes: copy.syncedBytes, finished: copy.finished };
  }

  /** The oldest logfile here, if any. */
  get oldestSequence(): number | undefined {
    const sequences = [...this.copies.keys()];
    return sequences.length === 0 ? undefined : Math.min(...sequences);
  }

  logfile(sequence: number): LocalLogfile | undefined {
    return this.copies.get(sequence);
  }

  /** Fetches from `source` (or stops fetching with undefined). */
  start(source: FetchSource | undefined): void {
    if (this.state === "split-brain") return;
    const sameAddress = JSON.stringify(source?.address) === JSON.stringify(this.source?.address);
    if (this.link && source && this.source?.peer === source.peer && sameAddress) return;
    this.stop();
    this.source = source;
    this.unreachableSinceMs = undefined;
    if (!source) {
      this.state = "no-source";
      return;
    }
    this.state = "connecting";
    this.link = new PeerLink(source.peer, source.address, this.options.network,
      this.options.context, "log", {
        opened: (session) => this.opened(session),
        failed: (reason) => {
          this.unreachableSinceMs ??= this.options.clock.monotonicMs();
          if (this.state === "streaming" || this.state === "connecting") {
            this.state = "connecting";
            this.problem = reason;
          }
        },
      });
    this.link.start();
  }

  /** Starts again `fetchRetryDelayMs` after a local write failure stopped fetching. */
  retryAfterFailure(): void {
    if (this.state !== "failed" || this.link || this.writing) return;
    if (this.options.clock.monotonicMs() - this.failedAtMs < fetchRetryDelayMs) return;
    this.options.log("info", "log-fetch-retry", { resource: this.options.resource });
    const source = this.source;
    this.state = "paused";
    this.start(source);
    if (this.queue.length > 0) void this.write();
  }

  /** Stops fetching; what arrived is still written. */
  stop(): void {
    this.link?.stop();
    this.link = undefined;
    this.session = undefined;
    this.ackTimer?.cancel();
    this.watchdog?.cancel();
    if (this.state !== "split-brain") this.state = "paused";
  }

  /**
   * Repairs a damaged local copy: logfile `sequence` is cut at `offset` (a record boundary, the
   * defective record), later copies are removed, and fetching resumes there with the source
   * verifying its own copy first.
   */
  async repair(sequence: number, offset: number): Promise<void> {
    const source = this.source;
    this.stop();
    await this.drained();
    const copy = this.copies.get(sequence);
    assert(copy !== undefined, "a repaired logfile exists here");
    for (const later of [...this.copies.values()].filter((item) => item.sequence > sequence)) {
      await this.options.storage.files.remove(later.path);
      this.copies.delete(later.sequence);
    }
    await truncateCopy(this.options.storage, copy, offset);
    copy.finished = false;
    copy.chainDigest = undefined;
    this.sequence = sequence;
    this.receivedBytes = offset;
    await this.loadTail();
    this.verifyNext = true;
    this.options.log("warn", "log-repair", { resource: this.options.resource, sequence, offset });
    if (source) this.start(source);
  }

  private opened(session: Session): SessionHandlers {
    this.session = session;
    this.sessionNumber++;
    this.sessionAckedBytes = 0;
    this.sessionSyncedBytes = 0;
    this.state = "streaming";
    this.problem = "";
    this.unreachableSinceMs = undefined;
    this.lastHeardMs = this.options.clock.monotonicMs();
    this.watch(session);
    const origin = this.copies.get(this.sequence)?.origin ?? "";
    session.send({
      type: "log-fetch", resource: this.options.resource, sequence: this.sequence, origin,
      offset: this.receivedBytes, tail: this.tail, verify: this.verifyNext,
      windowBytes: windowForRate(this.options.rateBytesPerSecondMax),
    });
    const number = this.sessionNumber;
    return {
      message: (message) => {
        if (number === this.sessionNumber) this.onMessage(session, message);
      },
      closed: (reason) => {
        if (this.session === session) this.session = undefined;
        if (this.state === "streaming") this.state = "connecting";
        this.options.log("info", "log-stream-closed", {
          resource: this.options.resource, peer: session.peer, reason,
        });
      },
    };
  }

  /** Drops a session that has been silent too long (a dead peer or a silent cut). */
  private watch(session: Session): void {
    this.watchdog?.cancel();
    this.watchdog = this.options.clock.setTimer(fetchSilenceMsMax / 3, () => {
      if (this.session !== session) return;
      if (this.options.clock.monotonicMs() - this.lastHeardMs > fetchSilenceMsMax) {
        return this.dropSession(session, "the source has been silent too long");
      }
      this.watch(session);
    });
  }

  private onMessage(session: Session, message: Message): void {
    this.lastHeardMs = this.options.clock.monotonicMs();
    if (message.type === "log-data") return this.onData(session, message);
    if (message.type === "log-finished") {
      if (message.sequence !== this.sequence || message.lengthBytes !== this.receivedBytes) {
        return this.dropSession(session, "log-finished does not match what arrived");
      }
      this.enqueue({ kind: "finish", session: this.sessionNumber, ...message });
      this.sequence++;
      this.receivedBytes = 0;
      this.tail = new Uint8Array(0);
      return;
    }
    if (message.type === "log-status") {
      this.sourceEnd = { sequence: message.sequence, offsetBytes: message.durableOffset };
      this.pendingBytes = message.pendingBytes;
      return;
    }
    if (message.type === "refusal") return this.onRefusal(message.code, message.reason);
  }

  private onData(session: Session, message: Extract<Message, { type: "log-data" }>): void {
    if (message.sequence !== this.sequence || message.offset !== this.receivedBytes) {
      return this.dropSession(session, `data for ${message.sequence}@${message.offset}, ` +
        `expected ${this.sequence}@${this.receivedBytes}`);
    }
    let bytes = message.bytes;
    if (message.compressed) {
      try {
        bytes = zstdDecompress(message.bytes);
      } catch {
        return this.dropSession(session, "log data does not decompress");
      }
    }
    if (bytes.length !== message.rawBytes || crc32(bytes) !== message.checksum) {
      return this.dropSession(session, "log data checksum mismatch");
    }
    if (this.queuedBytes + bytes.length > fetchQueueBytesMax) {
      return this.dropSession(session, "the source overran the fetch window");
    }
    this.verifyNext = false;
    this.enqueue({
      kind: "data", session: this.sessionNumber, sequence: message.sequence,
      offset: message.offset, bytes: bytes.slice(),
    });
    this.receivedBytes += bytes.length;
    this.tail = lastBytes(this.tail, bytes, logTailBytesMax);
  }

  private onRefusal(code: string, reason: string): void {
    this.problem = reason;
    this.options.log("warn", "log-fetch-refused", {
      resource: this.options.resource, code, reason,
    });
    if (code === "split-brain") this.splitBrain(reason);
    else if (code === "defective-log") this.state = "source-defective";
    else if (code === "not-found") this.state = "source-missing";
    else this.state = "failed";
  }

  private splitBrain(reason: string): void {
    this.stop();
    this.state = "split-brain";
    this.problem = reason;
    this.options.log("error", "split-brain", { resource: this.options.resource, reason });
  }

  /** A misbehaving stream is dropped; the link reconnects and resumes from what arrived. */
  private dropSession(session: Session, reason: string): void {
    this.options.log("warn", "log-stream-dropped", { resource: this.options.resource, reason });
    session.close();
  }

  private enqueue(item: QueueItem): void {
    this.queue.push(item);
    if (item.kind === "data") this.queuedBytes += item.bytes.length;
    assert(this.queuedBytes <= fetchQueueBytesMax, "fetched bytes queued within the limit");
    void this.write();
  }

  private async drained(): Promise<void> {
    while (this.writing || this.queue.length > 0) {
      await new Promise<void>((resolve) => this.options.clock.setTimer(1, resolve));
    }
  }

  /** Phase "append": writes queued bytes in order, fdatasyncs, then acknowledges them. */
  private async write(): Promise<void> {
    if (this.writing) return;
    this.writing = true;
    try {
      while (this.queue.length > 0 && this.state !== "split-brain") {
        const head = this.queue[0]!;
        if (head.kind === "finish") {
          this.queue.shift();
          await this.phaseFinish(head.sequence, head.lengthBytes);
          continue;
        }
        const items = this.takeContiguous(head.sequence);
        const appended = await this.phaseAppend(items);
        if (!appended) break;
      }
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.state = "failed";
      this.problem = error.message;
      this.options.log("error", "log-fetch-failed", {
        resource: this.options.resource, reason: error.message,
      });
      this.stop();
      this.state = "failed";
      this.failedAtMs = this.options.clock.monotonicMs();
    } finally {
      this.writing = false;
    }
  }

  private takeContiguous(sequence: number) {
    const items: Extract<QueueItem, { kind: "data" }>[] = [];
    for (const item of this.queue) {
      if (item.kind !== "data" || item.sequence !== sequence) break;
      items.push(item);
    }
    return items;
  }

  /** Returns false when a new logfile's header has not fully arrived yet. */
  private async phaseAppend(items: Extract<QueueItem, { kind: "data" }>[]): Promise<boolean> {
    const first = items[0]!;
    let copy = this.copies.get(first.sequence);
    if (!copy) {
      const bytes = items.reduce((sum, item) => sum + item.bytes.length, 0);
      if (bytes < logfileHeaderBytes) return false;
      copy = await this.phaseCreate(first.sequence, joinBytes(items));
      if (!copy) return false;
    }
    assert(first.offset === copy.syncedBytes, "fetched bytes are appended at the end");
    const { files, io } = this.options.storage;
    const fd = await files.open(copy.path, {});
    try {
      let offset = copy.syncedBytes;
      const operations = items.map((item) => {
        const operation = { kind: "write" as const, fd, offset, buffer: item.bytes };
        offset += item.bytes.length;
        return operation;
      });
      const results = await io.submit([...operations, { kind: "fsync", fd, dataOnly: true }],
        { ordered: true });
      const failed = results.find((result) => !result.ok);
      if (failed && !failed.ok) {
        throw new MarsError(failed.errno === "ENOSPC" ? "no-space" : "io",
          `${copy.path}: append failed: ${failed.message}`);
      }
      this.queue.splice(0, items.length);
      for (const item of items) this.queuedBytes -= item.bytes.length;
      copy.syncedBytes = offset;
    } finally {
      await files.close(fd);
    }
    const current = items.filter((item) => item.session === this.sessionNumber);
    const bytes = current.reduce((sum, item) => sum + item.bytes.length, 0);
    this.syncedBytesTotal += items.reduce((sum, item) => sum + item.bytes.length, 0);
    this.sessionSyncedBytes += bytes;
    this.acknowledge(bytes);
    this.options.progressed();
    return true;
  }

  /**
   * Phase "create": the first bytes of a new logfile. Its header must continue the local chain
   * (name the chain digest of the previous logfile here); otherwise the histories diverged and
   * nothing of it is written.
   */
  private async phaseCreate(sequence: number, start: Uint8Array) {
    const created = await createCopy(this.options.storage, this.options.directory,
      this.options.resource, sequence, start, this.copies.get(sequence - 1));
    if (typeof created === "string") {
      this.splitBrain(created);
      return undefined;
    }
    this.copies.set(sequence, created);
    return created;
  }

  /** Phase "finish": the source says the logfile ends; every byte of it is durable here. */
  private async phaseFinish(sequence: number, lengthBytes: number): Promise<void> {
    const copy = this.copies.get(sequence);
    if (!copy || copy.syncedBytes !== lengthBytes) {
      this.splitBrain(`logfile ${sequence} ends at ${lengthBytes} at the source but holds ` +
        `${copy?.syncedBytes ?? 0} bytes here`);
      return;
    }
    copy.finished = true;
    this.options.progressed();
    // Now, while the copy is surely here: its chain digest, and that it is finished.
    await recordFinished(this.options.storage, this.options.directory, copy);
  }

  /**
   * Forgets local copies below `sequence` that log lifetime deleted (their chain digests are
   * kept where already known, so the chain check of later logfiles still works).
   */
  forgetBelow(sequence: number): void {
    for (const key of [...this.copies.keys()]) {
      if (key < sequence && key < this.sequence - 1) this.copies.delete(key);
    }
  }

  /** Acknowledges durable bytes, no faster than the rate limit allows. */
  private acknowledge(bytes: number): void {
    const limit = this.options.rateBytesPerSecondMax;
    const now = this.options.clock.monotonicMs();
    if (now - this.rateWindowStartMs >= 1000) {
      this.rateWindowStartMs = now;
      this.rateWindowBytes = 0;
    }
    this.rateWindowBytes += bytes;
    const send = () => {
      this.ackTimer = undefined;
      if (this.sessionAckedBytes === this.sessionSyncedBytes) return;
      this.sessionAckedBytes = this.sessionSyncedBytes;
      this.session?.send({ type: "log-ack", bytes: this.sessionAckedBytes });
    };
    if (limit > 0 && this.rateWindowBytes > limit) {
      const delayMs = (this.rateWindowBytes / limit) * 1000 - (now - this.rateWindowStartMs);
      this.ackTimer ??= this.options.clock.setTimer(Math.max(1, delayMs), send);
      return;
    }
    if (!this.ackTimer) send();
  }
}

