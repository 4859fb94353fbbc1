/** One behaviour suite for every BlockDevice implementation; each skip states its reason. */
import { afterEach, describe, expect, test } from "bun:test";
import { assertCapabilities, checkedBlockDevice } from "../../src/block/checked.ts";
import type { BlockDevice } from "../../src/block/types.ts";

export interface ConformanceSubject {
  readonly device: BlockDevice;
  /** Closes what the factory opened besides the device (files, engines, directories). */
  readonly cleanup?: () => Promise<void>;
  /** Opens the same storage again after `device.close()`, for persistence checks. */
  readonly reopen?: () => Promise<BlockDevice>;
}

/** Builds a fresh, zero-filled device of `sizeBytes`. */
export type ConformanceFactory = (sizeBytes: number) => Promise<ConformanceSubject>;

export type ConformanceTest =
  | "capabilities" | "fresh-zeroes" | "write-read" | "overlap-order" | "fua"
  | "mixed-alignment" | "flush" | "trim" | "write-zeroes" | "maximum-request" | "contract"
  | "persistence";

export interface ConformanceOptions {
  readonly sizeBytes?: number;
  /** Tests not run for this implementation, each with the reason why. */
  readonly skip?: Partial<Record<ConformanceTest, string>>;
}

function pattern(lengthBytes: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(lengthBytes);
  for (let index = 0; index < lengthBytes; index++) {
    bytes[index] = (index * 31 + seed * 7 + 1) & 255;
  }
  return bytes;
}

async function readBack(
  device: BlockDevice, offset: number, lengthBytes: number,
): Promise<Uint8Array<ArrayBuffer>> {
  const target = new Uint8Array(lengthBytes);
  await device.read(offset, target);
  return target;
}

/** Registers the suite under `describe(name)`. */
export function runBlockDeviceSuite(
  name: string, factory: ConformanceFactory, options: ConformanceOptions = {},
): void {
  const sizeBytes = options.sizeBytes ?? 1024 * 1024;
  let subject: ConformanceSubject | undefined;
  let device: BlockDevice;

  const open = async () => {
    subject = await factory(sizeBytes);
    device = checkedBlockDevice(subject.device);
    return device;
  };
  const check = (testName: ConformanceTest, body: () => Promise<void>) => {
    const reason = options.skip?.[testName];
    if (reason !== undefined) {
      test.skip(`${testName} (skipped: ${reason})`, () => {});
      return;
    }
    test(testName, async () => {
      await open();
      await body();
    });
  };

  describe(`block device conformance: ${name}`, () => {
    afterEach(async () => {
      await device?.close().catch(() => {});
      await subject?.cleanup?.();
      subject = undefined;
    });

    check("capabilities", async () => {
      assertCapabilities(device.capabilities, device.sizeBytes);
      expect(device.sizeBytes).toBeGreaterThanOrEqual(sizeBytes);
    });

    check("fresh-zeroes", async () => {
      expect(await readBack(device, 0, 65536)).toEqual(new Uint8Array(65536));
    });

    check("write-read", async () => {
      const unit = Math.max(device.capabilities.blockSizes.minimumBytes, 512);
      const cases = [[0, unit], [unit * 3, unit * 5], [sizeBytes - unit * 2, unit * 2]] as const;
      for (const [index, [offset, lengthBytes]] of cases.entries()) {
        await device.write(offset, pattern(lengthBytes, index), { fua: false });
      }
      for (const [index, [offset, lengthBytes]] of cases.entries()) {
        expect(await readBack(device, offset, lengthBytes)).toEqual(pattern(lengthBytes, index));
      }
    });

    check("overlap-order", async () => {
      const unit = Math.max(device.capabilities.blockSizes.minimumBytes, 4096);
      const writes = Array.from({ length: 16 }, (_, index) =>
        device.write((index % 3) * unit, pattern(unit * 2, index), { fua: false }));
      await Promise.all(writes);
      // Issue order decides: index 15 wrote [0, 2u) last, index 14 wrote [2u, 4u) last.
      expect(await readBack(device, 0, unit * 2)).toEqual(pattern(unit * 2, 15));
      expect(await readBack(device, unit * 2, unit * 2)).toEqual(pattern(unit * 2, 14));
    });

    check("mixed-alignment", async () => {
      // Aligned and unaligned writes may take different paths (file.ts directWrites).
      if (device.capabilities.blockSizes.minimumBytes > 512) return;
      const expected = pattern(16384, 5);
      await device.write(0, expected, { fua: false });
      const small = pattern(100, 6);
      await device.write(4000, small, { fua: false });
      expected.set(small, 4000);
      const block = pattern(4096, 7);
      await device.write(4096, block, { fua: false });
      expected.set(block, 4096);
      await device.write(8190, small, { fua: false });
      expected.set(small, 8190);
      expect(await readBack(device, 0, 16384)).toEqual(expected);
    });

    check("fua", async () => {
      const unit = Math.max(device.capabilities.blockSizes.minimumBytes, 4096);
      if (device.capabilities.fua === "none") return;
      await device.write(unit, pattern(unit, 9), { fua: true });
      expect(await readBack(device, unit, unit)).toEqual(pattern(unit, 9));
    });

    check("flush", async () => {
      if (!device.capabilities.flush) return;
      await device.write(0, pattern(4096, 2), { fua: false });
      await device.flush();
      await device.flush();
      expect(await readBack(device, 0, 4096)).toEqual(pattern(4096, 2));
    });

    check("trim", async () => {
      if (!device.capabilities.trim) return;
      await device.write(0, pattern(16384, 3), { fua: false });
      await device.trim(4096, 8192, { fua: false });
      const back = await readBack(device, 0, 16384);
      expect(back.subarray(4096, 12288)).toEqual(new Uint8Array(8192));
      expect(back.subarray(0, 4096)).toEqual(pattern(16384, 3).subarray(0, 4096));
      expect(back.subarray(12288)).toEqual(pattern(16384, 3).subarray(12288));
    });

    check("write-zeroes", async () => {
      if (!device.capabilities.writeZeroes) return;
      await device.write(0, pattern(16384, 4), { fua: false });
      await device.writeZeroes(0, 8192, { fua: true, noHole: false });
      const back = await readBack(device, 0, 16384);
      expect(back.subarray(0, 8192)).toEqual(new Uint8Array(8192));
      expect(back.subarray(8192)).toEqual(pattern(16384, 4).subarray(8192));
    });

    check("maximum-request", async () => {
      const lengthBytes = Math.min(device.capabilities.blockSizes.maximumBytes, sizeBytes);
      await device.write(0, pattern(lengthBytes, 5), { fua: false });
      expect(await readBack(device, 0, lengthBytes)).toEqual(pattern(lengthBytes, 5));
    });

    check("contract", async () => {
      const beyond = device.read(device.sizeBytes, new Uint8Array(4096));
      await expect(beyond).rejects.toMatchObject({ errno: "EINVAL" });
      await device.close();
      const closed = device.read(0, new Uint8Array(512));
      await expect(closed).rejects.toMatchObject({ errno: "ESHUTDOWN" });
    });

    check("persistence", async () => {
      expect(subject?.reopen).toBeDefined();
      await device.write(8192, pattern(8192, 6), { fua: false });
      await device.flush();
      await device.close();
      device = checkedBlockDevice(await subject!.reopen!());
      expect(await readBack(device, 8192, 8192)).toEqual(pattern(8192, 6));
    });
  });
}
