/** Applies one verified log record to a block device: the step recovery and replay share. */
import { unreachable } from "../lib/assert.ts";
import type { BlockDevice } from "../block/types.ts";
import type { ScannedRecord } from "./reader.ts";

/** Idempotent: applying a record twice leaves the device as applying it once. */
export async function applyRecord(device: BlockDevice, record: ScannedRecord): Promise<void> {
  const { header, payload } = record;
  switch (header.kind) {
    case "write":
      return device.write(header.deviceOffset, payload, { fua: false });
    case "trim":
      if (device.capabilities.trim) return device.trim(header.deviceOffset, header.lengthBytes,
        { fua: false });
      return device.writeZeroes(header.deviceOffset, header.lengthBytes,
        { fua: false, noHole: false });
    case "write-zeroes":
      return device.writeZeroes(header.deviceOffset, header.lengthBytes,
        { fua: false, noHole: false });
    case "gap":
      // A gap names history that is missing; it changes no block (replay stops before it).
      return;
    default:
      unreachable(header.kind, "record kind");
  }
}
