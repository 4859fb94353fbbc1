/** Applies one verified log record to a block device: the step recovery and replay share. */
import { assert, unreachable } from "../lib/assert.ts";
import { OverlapOrder } from "../block/ordering.ts";
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

/** Records applied at once by a ParallelApplier. */
export const applyInFlightMax = 64;
/** Payload bytes held by records in flight. */
export const applyInFlightBytesMax = 64 * 1024 * 1024;

/**
 * Applies records in parallel while two records that overlap still reach the device in log
 * order (replay and recovery). `drain()` waits for all; the first failure is rethrown there
 * and by the next `apply`.
 */
export class ParallelApplier {
  private readonly order = new OverlapOrder();
  private readonly inFlight = new Set<Promise<void>>();
  private inFlightBytes = 0;
  private failure: unknown;
  applied = 0;

  constructor(private readonly device: BlockDevice) {}

  /** Starts applying `record`; waits first while the in-flight limits are reached. */
  async apply(record: ScannedRecord): Promise<void> {
    const bytes = record.payload.length;
    while (this.inFlight.size >= applyInFlightMax ||
      (this.inFlight.size > 0 && this.inFlightBytes + bytes > applyInFlightBytesMax)) {
      await Promise.race(this.inFlight);
    }
    if (this.failure !== undefined) throw this.failure;
    const { deviceOffset, lengthBytes } = record.header;
    this.inFlightBytes += bytes;
    const done: Promise<void> = this.order.run(deviceOffset, lengthBytes, true,
      () => applyRecord(this.device, record))
      .then(() => { this.applied++; }, (error: unknown) => { this.failure ??= error; })
      .finally(() => {
        this.inFlight.delete(done);
        this.inFlightBytes -= bytes;
      });
    this.inFlight.add(done);
    assert(this.inFlight.size <= applyInFlightMax, "applies in flight within their limit");
  }

  /** Waits for every started record; rethrows the first failure. */
  async drain(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.race(this.inFlight);
    if (this.failure !== undefined) throw this.failure;
  }
}
