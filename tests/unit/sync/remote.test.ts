// The sync over a message channel: CBOR round trip, equal disks, refusal, a lost connection.
import { expect, test } from "bun:test";
import { createMemoryDevice } from "../../../src/block/memory.ts";
import { MarsError } from "../../../src/lib/errors.ts";
import { decodeCbor, encodeCbor } from "../../../src/platform/cbor.ts";
import { memoryCursorStore } from "../../../src/sync/cursor.ts";
import { runFullSync } from "../../../src/sync/full-sync.ts";
import {
  RemoteSyncPeer, serveSyncSession, type SyncSourceLookup,
} from "../../../src/sync/remote.ts";
import { localSyncSource } from "../../../src/sync/source.ts";
import { parseSyncMessage, type SyncMessage, type SyncWire } from "../../../src/sync/wire.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";

/** Two ends joined by a queue of CBOR frames; `cutAfter` frames from the source end it. */
function channel(lookup: SyncSourceLookup, cutAfter = Infinity) {
  let open = true;
  let sourceFrames = 0;
  const deliver = (target: (message: SyncMessage) => void, value: object) => {
    const bytes = encodeCbor({ ...value, time: 1 });
    queueMicrotask(() => {
      if (!open) return;
      const record = decodeCbor(bytes) as Record<string, unknown>;
      target(parseSyncMessage(record, 1)!);
    });
  };
  // Graceful close: frames already sent arrive first (as a connection's end() does).
  const close = () => queueMicrotask(() => cut());
  const cut = () => {
    if (!open) return;
    open = false;
    queueMicrotask(() => peer.closed("cut"));
  };
  const targetWire: SyncWire = {
    send: (message) => (deliver(server, message), true), close,
  };
  const sourceWire: SyncWire = {
    send: (message) => {
      if (++sourceFrames > cutAfter) cut();
      else deliver((received) => peer.receive(received), message);
      return true;
    },
    close,
  };
  const peer = new RemoteSyncPeer(targetWire, "r");
  const server = serveSyncSession(sourceWire, lookup);
  return peer;
}

function devices() {
  const source = createMemoryDevice(300 * 1024);
  const target = createMemoryDevice(300 * 1024);
  for (let index = 0; index < source.bytes.length; index++) source.bytes[index] = index * 13;
  target.bytes.set(source.bytes.subarray(0, 100_000));
  const lookup: SyncSourceLookup = (resource) => resource !== "r"
    ? { code: "unknown-resource", reason: "no such resource" }
    : localSyncSource({ host: "alpha", view: source, reads: "device-view",
      logEnd: () => ({ sequence: 2, offsetBytes: 500 }),
      writebackPosition: () => ({ sequence: 2, offsetBytes: 100 }) });
  return { source, target, lookup };
}

const geometry = { blockBytes: 4096, chunkBytes: 16 * 4096 };

test("a sync over the channel makes the disks equal and records the source's position",
  async () => {
  const { source, target, lookup } = devices();
  const outcome = await runFullSync({ target, peer: channel(lookup), geometry,
    cursors: memoryCursorStore(), clock: new SimulatedClock() });
  expect(Buffer.compare(source.bytes, target.bytes)).toBe(0);
  expect(outcome.cursor.startPosition).toEqual({ sequence: 2, offsetBytes: 500 });
  expect(outcome.cursor.endPosition).toEqual({ sequence: 2, offsetBytes: 500 });
  expect(outcome.cursor.source).toBe("alpha");
});

test("an unknown resource is refused with its code", async () => {
  const { target, lookup } = devices();
  const peer = channel((resource) => lookup(`${resource}-other`));
  const running = runFullSync({ target, peer, geometry, cursors: memoryCursorStore(),
    clock: new SimulatedClock() });
  expect(running).rejects.toMatchObject({ code: "unknown-resource" });
});

test("a lost connection fails the sync; a new one resumes from the cursor", async () => {
  const { source, target, lookup } = devices();
  const cursors = memoryCursorStore();
  const clock = new SimulatedClock();
  // Source frames: begun, then per chunk its blocks and the durable end before the cursor
  // moves; the 6th frame is cut, so two chunks are persisted.
  const first = runFullSync({ target, peer: channel(lookup, 5), geometry, cursors, clock,
    windowChunks: 1, persistEveryChunks: 1 });
  expect(first).rejects.toBeInstanceOf(MarsError);
  await first.catch(() => {});
  expect(cursors.current?.copiedBytes).toBe(2 * geometry.chunkBytes);
  await runFullSync({ target, peer: channel(lookup), geometry, cursors, clock });
  expect(Buffer.compare(source.bytes, target.bytes)).toBe(0);
});

test("a cursor from another source is not resumed: the copy starts again", async () => {
  const { source, target, lookup } = devices();
  const cursors = memoryCursorStore();
  cursors.current = { phase: "copy", source: "gamma", sizeBytes: source.bytes.length,
    startPosition: { sequence: 1, offsetBytes: 100 }, copiedBytes: 4 * 65536, startedMs: 0 };
  const outcome = await runFullSync({ target, peer: channel(lookup), geometry, cursors,
    clock: new SimulatedClock() });
  expect(outcome.comparedBytes).toBe(source.bytes.length);
  expect(outcome.cursor.source).toBe("alpha");
  expect(outcome.cursor.startPosition).toEqual({ sequence: 2, offsetBytes: 500 });
  expect(Buffer.compare(source.bytes, target.bytes)).toBe(0);
});

test("sync-log-end alone: the source answers its log ends, and why not for unknown ones", () => {
  const { lookup } = devices();
  const sent: SyncMessage[] = [];
  let closed = false;
  const wire: SyncWire = {
    send: (message) => (sent.push({ ...message, time: 1 } as SyncMessage), true),
    close: () => void (closed = true),
  };
  const receive = serveSyncSession(wire, lookup);
  const question = parseSyncMessage(
    decodeCbor(encodeCbor({ type: "sync-log-end", resources: ["r", "r9"], time: 1 })) as
      Record<string, unknown>, 1)!;
  receive(question);
  return Bun.sleep(1).then(() => {
    const reply = parseSyncMessage(decodeCbor(encodeCbor(sent[0])) as Record<string, unknown>, 1);
    expect(reply).toEqual({ type: "sync-log-ends", time: 1, ends: [
      { resource: "r", sequence: 2, offset: 500 },
      { resource: "r9", code: "unknown-resource", reason: "no such resource" },
    ] });
    expect(closed).toBe(false);
  });
});
