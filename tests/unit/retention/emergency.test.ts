// Emergency mode: no write is lost across enter/leave, the log gets a gap and stops growing.
import { expect, test } from "bun:test";
import { openFileDevice } from "../../../src/block/file.ts";
import { comparePositions } from "../../../src/log/position.ts";
import { listLogfiles } from "../../../src/log/verify.ts";
import { scanLogfile } from "../../../src/log/reader.ts";
import { seededRandom } from "../../../src/platform/random.ts";
import { EmergencyDevice } from "../../../src/retention/emergency.ts";
import { openTranslog } from "../../../src/translog/translog.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";
import { SimulatedStorage } from "../../support/simulated-storage.ts";

const deviceBytes = 256 * 1024;

async function openDevice(storage: SimulatedStorage) {
  const translog = await openTranslog({
    storage, clock: new SimulatedClock(), directory: "/home/r1", resource: "r1", host: "alpha",
    backing: await openFileDevice(storage, "/disk", { createBytes: deviceBytes }),
  });
  return new EmergencyDevice(translog, await openFileDevice(storage, "/disk"));
}

test("writes before, during and after emergency mode all read back; the log has a gap",
  async () => {
    const random = seededRandom(11);
    const storage = new SimulatedStorage(random);
    await storage.files.makeDirectory("/home/r1");
    const device = await openDevice(storage);
    const model = new Uint8Array(deviceBytes);
    const write = (index: number) => {
      const offset = (random.nextUint32() % (deviceBytes / 4096)) * 4096;
      const data = new Uint8Array(4096).fill(index & 255);
      model.set(data, offset);
      return device.write(offset, data, { fua: index % 7 === 0 });
    };
    const batch = (from: number) => Promise.all(Array.from({ length: 20 }, (_, index) =>
      write(from + index)));
    await batch(0);
    const running = batch(20);
    await device.enter();
    await running;
    expect(device.mode).toBe("direct");
    const logEnd = device.translog.logEnd;
    await batch(40);
    await device.flush();
    expect(comparePositions(device.translog.logEnd, logEnd)).toBe(0);
    const read = new Uint8Array(deviceBytes);
    await device.read(0, read);
    expect(Buffer.compare(read, model)).toBe(0);
    await device.leave();
    expect(device.mode).toBe("logging");
    await batch(60);
    await device.read(0, read);
    expect(Buffer.compare(read, model)).toBe(0);
    await device.close();

    const kinds: string[] = [];
    const lastKinds: string[] = [];
    for (const file of await listLogfiles(storage, "/home/r1")) {
      let last = "";
      await scanLogfile(storage, file.path, {
        onRecord: (record) => {
          kinds.push(record.header.kind);
          last = record.header.kind;
        },
      });
      lastKinds.push(last);
    }
    expect(kinds).toContain("gap");
    expect(kinds.indexOf("gap")).toBe(40);
    // The gap ends its logfile, so that logfile can be deleted during the emergency.
    expect(lastKinds[0]).toBe("gap");
    expect(lastKinds.length).toBe(2);
    const reopened = await openDevice(storage);
    await reopened.read(0, read);
    expect(Buffer.compare(read, model)).toBe(0);
    await reopened.close();
  });
