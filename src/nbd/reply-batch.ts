/** Replies completed in one burst leave in one socket write instead of one write (syscall) each. */
import { assert } from "../lib/assert.ts";

/** A batch this large is written at once instead of waiting for the burst to end. */
export const replyBatchBytesMax = 256 * 1024;
/** Replies collected before a write, whatever their size. */
export const replyBatchCountMax = 256;

/**
 * Collects replies and writes them together once the completions that are already running
 * have had their turn (two microtask hops: a device completion resolves several requests at
 * once, and each needs a few hops to produce its reply).
 */
export class ReplyBatch {
  private parts: Uint8Array[] = [];
  private releases: Array<() => void> = [];
  private bytes = 0;
  private scheduled = false;
  /**
   * Where small replies are joined, reused: the connection copies what it takes, and a fresh
   * 100+ KiB buffer per burst cost a zero fill and new pages each time (~17 % of a 4 KiB
   * random-read profile).
   */
  private joinBuffer: Uint8Array | undefined;

  constructor(
    private readonly write: (bytes: Uint8Array) => boolean,
    private readonly blocked: () => void,
  ) {}

  /** Queues `reply`; `release` runs once the connection has taken (copied) its bytes. */
  add(reply: Uint8Array, release?: () => void): void {
    this.parts.push(reply);
    if (release) this.releases.push(release);
    this.bytes += reply.length;
    assert(this.parts.length <= replyBatchCountMax, "reply batch within its count limit");
    if (this.bytes >= replyBatchBytesMax || this.parts.length === replyBatchCountMax) {
      this.flush();
      return;
    }
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => queueMicrotask(() => {
      this.scheduled = false;
      this.flush();
    }));
  }

  /** Writes everything collected; big batches go out part by part, small ones joined. */
  flush(): void {
    if (this.parts.length === 0) return;
    const parts = this.parts;
    const bytes = this.bytes;
    const releases = this.releases;
    this.parts = [];
    this.releases = [];
    this.bytes = 0;
    let accepted = true;
    if (parts.length === 1 || bytes > replyBatchBytesMax) {
      for (const part of parts) accepted = this.write(part) && accepted;
    } else {
      assert(bytes <= replyBatchBytesMax, "a joined batch fits the join buffer");
      this.joinBuffer ??= new Uint8Array(replyBatchBytesMax);
      const joined = this.joinBuffer.subarray(0, bytes);
      let offset = 0;
      for (const part of parts) {
        joined.set(part, offset);
        offset += part.length;
      }
      accepted = this.write(joined);
    }
    for (const release of releases) release();
    if (!accepted) this.blocked();
  }
}
