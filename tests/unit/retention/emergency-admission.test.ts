// A write admitted by the space guard while another one starts emergency mode: it must not
// reach the translog behind the switch's back (its writeback would land after direct writes).
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import type { BlockDevice, WriteFlags } from "../../../src/block/types.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import type { SpaceStatus } from "../../../src/platform/types.ts";
import { EmergencyDevice } from "../../../src/retention/emergency.ts";
import {
  logPreallocationReserveBytes, logSlackBytes, SpaceGuard, writeChargeBytes,
} from "../../../src/retention/space-guard.ts";
import type { Translog } from "../../../src/translog/translog.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const deviceBytes = 1024 * 1024;
const position = { sequence: 1, offsetBytes: 0 };

/**
 * The parts of a translog EmergencyDevice uses: a write waits for room in the overlay (until
 * `admitWrites`), is acknowledged once logged, and reaches the disk by writeback later
 * (`writeBack`, or a drain: every entry logged by then).
 */
function fakeTranslog(disk: BlockDevice) {
  const overlay = new Map<number, Uint8Array>();
  let admitWrites!: () => void;
  const room = new Promise<void>((resolve) => { admitWrites = resolve; });
  const writeBack = async () => {
    for (const [offset, data] of overlay) await disk.write(offset, data, { fua: false });
    overlay.clear();
  };
  const translog = {
    get sizeBytes() { return disk.sizeBytes; },
    capabilities: disk.capabilities,
    logEnd: position, durableEnd: position, writebackPosition: position,
    persistedPosition: position,
    read: async (offset: number, target: Uint8Array) => {
      await disk.read(offset, target);
      const entry = overlay.get(offset);
      if (entry && entry.length === target.length) target.set(entry);
    },
    write: async (offset: number, data: Uint8Array, _flags: WriteFlags) => {
      await room;
      overlay.set(offset, data.slice());
    },
    flush: async () => {},
    markGap: async () => {},
    drain: writeBack,
    close: writeBack,
  };
  return { translog: translog as unknown as Translog, admitWrites, writeBack };
}

test("a write admitted as emergency mode begins goes where the mode sends it, in order",
  async () => {
    const storage = new SimulatedStorage(seededRandom(5));
    const disk = await openFileDevice(storage, "/disk", { createBytes: deviceBytes });
    const { translog, admitWrites, writeBack } = fakeTranslog(disk);
    const device = new EmergencyDevice(translog, await openFileDevice(storage, "/disk"));
    let measured!: (space: SpaceStatus) => void;
    const guard = new SpaceGuard(() => new Promise((resolve) => { measured = resolve; }));
    device.guardSpace(guard, () => {});
    const first = new Uint8Array(4096).fill(1);
    const big = new Uint8Array(64 * 1024).fill(2);
    // Both wait for the first measurement; it has room for the first write only.
    const writingFirst = device.write(0, first, { fua: false });
    const writingBig = device.write(65536, big, { fua: false });
    await Bun.sleep(1);
    measured({ freeBytes: logPreallocationReserveBytes + logSlackBytes +
      writeChargeBytes(first.length) + 1024, totalBytes: 1 << 30 });
    await writingBig;
    expect(device.mode).toBe("direct");
    admitWrites();
    await writingFirst;
    // Acknowledged; the client writes the same block again, in emergency mode.
    const second = new Uint8Array(4096).fill(3);
    await device.write(0, second, { fua: false });
    await writeBack(); // the translog's writeback of whatever it logged
    const read = new Uint8Array(4096);
    await device.read(0, read);
    expect(read[0]).toBe(3);
    await device.close();
  });
