/** Keeps overlapping block requests in issue order while disjoint ones run in parallel. */
import { assert } from "../lib/assert.ts";

/** Requests a layer tracks at once; more would make the overlap scan the bottleneck. */
export const orderedRequestsMax = 4096;

interface TrackedRequest {
  readonly offset: number;
  readonly end: number;
  readonly writes: boolean;
  readonly done: Promise<void>;
}

/**
 * A request that writes waits for every earlier request overlapping it; a read waits only for
 * earlier overlapping writes. So a read after a resolved write sees it, and two overlapping
 * writes land in the order they were issued, whatever the I/O engine reorders underneath.
 */
export class OverlapOrder {
  private readonly inFlight = new Set<TrackedRequest>();

  get inFlightCount(): number {
    return this.inFlight.size;
  }

  /** Runs `work` once the earlier requests that conflict with [offset, offset+length) are done. */
  async run<T>(
    offset: number, lengthBytes: number, writes: boolean, work: () => Promise<T>,
  ): Promise<T> {
    assert(lengthBytes >= 0, "request length is not negative");
    const end = offset + lengthBytes;
    const blockers: Promise<void>[] = [];
    for (const other of this.inFlight) {
      const overlaps = other.offset < end && offset < other.end;
      if (overlaps && (writes || other.writes)) blockers.push(other.done);
    }
    let finish!: () => void;
    const request: TrackedRequest = {
      offset, end, writes, done: new Promise<void>((resolve) => (finish = resolve)),
    };
    assert(this.inFlight.size < orderedRequestsMax, "tracked requests within their limit");
    this.inFlight.add(request);
    try {
      if (blockers.length > 0) await Promise.all(blockers);
      return await work();
    } finally {
      this.inFlight.delete(request);
      finish();
    }
  }

  /** Resolves once every request issued so far has finished. */
  async drain(): Promise<void> {
    await Promise.all([...this.inFlight].map((request) => request.done));
  }
}
