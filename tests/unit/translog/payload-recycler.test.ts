// The overlay's payload copies are reused only when no read can still apply them.
import { expect, test } from "bun:test";
import { seededRandom } from "../../../src/platform/random.ts";
import { PayloadRecycler } from "../../../src/translog/payload-recycler.ts";
import {
  newMachine, openHarnessTranslog, runUntil, settle,
} from "../../support/translog-harness.ts";

test("a released copy is reused only after the reads in flight ended", () => {
  const recycler = new PayloadRecycler(16);
  const first = recycler.copy(new Uint8Array(32).fill(1));
  const ticket = recycler.readStarted();
  recycler.release(first);
  const second = recycler.copy(new Uint8Array(32).fill(2));
  expect(second).not.toBe(first);
  expect(first[0]).toBe(1);
  recycler.readEnded(ticket);
  const third = recycler.copy(new Uint8Array(32).fill(3));
  expect(third).toBe(first);
  expect(third[5]).toBe(3);
  // Small payloads are never reused.
  const small = recycler.copy(new Uint8Array(8));
  recycler.release(small);
  expect(recycler.copy(new Uint8Array(8))).not.toBe(small);
});

test("a leased buffer is kept as it is and given back once no read can apply it", () => {
  const recycler = new PayloadRecycler(16);
  const given: Uint8Array[] = [];
  const leased = (buffer: Uint8Array) => ({ keep: () => () => void given.push(buffer) });
  const first = new Uint8Array(32).fill(1);
  expect(recycler.keep(first, leased(first))).toBe(first);
  const early = recycler.readStarted();
  recycler.release(first);
  const late = recycler.readStarted(); // started after `first` left: cannot see it
  expect(given).toEqual([]);
  recycler.readEnded(early);
  expect(given).toEqual([first]);
  recycler.readEnded(late);
  // Without a lease, the data is copied.
  const second = new Uint8Array(32).fill(2);
  expect(recycler.keep(second, undefined)).not.toBe(second);
});

const payloadBytes = 8192;
const deviceBytes = 64 * payloadBytes;

test("a read racing writeback and new writes returns the data it was issued over", async () => {
  for (let seed = 1; seed <= 60; seed++) {
    const machine = await newMachine(seededRandom(seed), deviceBytes);
    const device = await openHarnessTranslog(machine,
      { payloadReuseBytesMin: 4096, writer: { batchDelayMs: 1 } });
    await runUntil(machine, device.write(0, new Uint8Array(payloadBytes).fill(1), { fua: true }));
    const target = new Uint8Array(payloadBytes);
    let done = false;
    const read = device.read(0, target).finally(() => (done = true));
    // Writeback of the first write ends (its copy leaves the overlay) while the read runs, and
    // every step brings a new write of the same size that would take a freed copy.
    for (let step = 1; !done && step < 60; step++) {
      const offset = (step % 63 + 1) * payloadBytes;
      void device.write(offset, new Uint8Array(payloadBytes).fill(step + 1), { fua: false });
      await settle();
      if (!machine.storage.step()) machine.clock.advance(1);
    }
    await runUntil(machine, read);
    expect(target.every((byte) => byte === 1), `seed ${seed}`).toBe(true);
    await runUntil(machine, device.close());
  }
});
