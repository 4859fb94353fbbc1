/** Emergency mode for one primary: writes bypass the full log and go straight to the disk. */
import { assert } from "../lib/assert.ts";
import {
  BlockError, type BlockCapabilities, type BlockDevice, type WriteFlags, type ZeroFlags,
} from "../block/types.ts";
import { recordRangeBytesMax } from "../log/format.ts";
import type { Translog } from "../translog/translog.ts";
import { writeChargeBytes, type SpaceGuard } from "./space-guard.ts";

export type EmergencyMode = "logging" | "entering" | "direct" | "leaving";

/** Requests that may wait at the gate while the mode switches (the NBD server bounds them). */
export const gateWaitersMax = 65536;

/**
 * The device a primary exports. Logging: every request goes through the translog. Direct
 * (emergency): the translog is drained first, a `gap` record marks the missing history, then
 * requests go to a second handle on the backing disk; the log stays as it was. Requests that
 * arrive while the mode switches wait; requests in flight finish on the side they started.
 */
export class EmergencyDevice implements BlockDevice {
  readonly capabilities: BlockCapabilities;
  mode: EmergencyMode = "logging";
  /** Why the gap record could not be written, when it could not (the log was already full). */
  gapProblem = "";
  /**
   * Set when the gap record did not become durable: the log would then claim a history it
   * does not hold, so direct writes never start and every later write fails with EIO.
   */
  private broken: BlockError | undefined;
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  private waiters = 0;
  private guard: SpaceGuard | undefined;
  /** Told when a write finds no room in the home's log space (before the mode switches). */
  private onShortOfSpace: ((bytes: number) => void) | undefined;
  /** Why entering emergency mode for lack of space failed: writes then go to the log as is. */
  private spaceEntryProblem: unknown;

  constructor(readonly translog: Translog, private readonly disk: BlockDevice) {
    assert(disk.sizeBytes >= translog.sizeBytes, "the direct handle covers the device");
    this.capabilities = translog.capabilities;
  }

  /** The translog's (its disk's) size now: it grows with the disk (mars resize). */
  get sizeBytes(): number {
    return this.translog.sizeBytes;
  }

  get logEnd() {
    return this.translog.logEnd;
  }
  get durableEnd() {
    return this.translog.durableEnd;
  }
  get writebackPosition() {
    return this.translog.writebackPosition;
  }
  /** Where recovery would start after a crash (see Translog.persistedPosition). */
  get persistedPosition() {
    return this.translog.persistedPosition;
  }
  /** True while writes bypass the log (published in the primary's replication report). */
  get emergency(): boolean {
    return this.mode !== "logging";
  }

  read(offset: number, target: Uint8Array): Promise<void> {
    return this.route((device) => device.read(offset, target));
  }

  write(offset: number, data: Uint8Array, flags: WriteFlags): Promise<void> {
    return this.route((device) => device.write(offset, data, flags),
      writeChargeBytes(data.length), true);
  }

  flush(): Promise<void> {
    return this.route((device) => device.flush(), 0, true);
  }

  trim(offset: number, lengthBytes: number, flags: WriteFlags): Promise<void> {
    return this.route((device) => device.trim(offset, lengthBytes, flags),
      rangeChargeBytes(lengthBytes), true);
  }

  writeZeroes(offset: number, lengthBytes: number, flags: ZeroFlags): Promise<void> {
    return this.route((device) => device.writeZeroes(offset, lengthBytes, flags),
      rangeChargeBytes(lengthBytes), true);
  }

  /**
   * From now on every logged request is first admitted by `guard`; one that finds no room puts
   * this resource into emergency mode and goes straight to the disk (no log write can then fail
   * for lack of space). `short` is told first. The result stops guarding.
   */
  guardSpace(guard: SpaceGuard, short: (bytes: number) => void): () => void {
    const unregister = guard.register(this);
    this.guard = guard;
    this.onShortOfSpace = short;
    return () => {
      unregister();
      this.guard = undefined;
      this.onShortOfSpace = undefined;
    };
  }

  /**
   * Enters emergency mode: phase1Quiesce (hold new requests, let running ones finish),
   * phase2Gap (a durable gap record), phase3Drain (everything logged is on the disk), then
   * requests go to the disk directly. Without a durable gap record it never goes direct: the
   * writes fail with EIO from then on (a broken log), and this throws.
   */
  async enter(): Promise<void> {
    if (this.broken) throw this.broken;
    if (this.mode !== "logging") return;
    this.mode = "entering";
    const open = await this.phase1Quiesce();
    try {
      await this.phase2Gap();
      await this.translog.drain();
      this.mode = "direct";
    } catch (error) {
      this.mode = "logging";
      throw error;
    } finally {
      open();
    }
  }

  /** Leaves emergency mode: quiesce, make the direct writes durable, log again. */
  async leave(): Promise<void> {
    if (this.mode !== "direct") return;
    this.mode = "leaving";
    const open = await this.phase1Quiesce();
    try {
      await this.disk.flush();
      this.mode = "logging";
    } catch (error) {
      this.mode = "direct";
      throw error;
    } finally {
      open();
    }
  }

  async close(): Promise<void> {
    if (this.mode === "direct") await this.disk.flush();
    await this.translog.close();
    await this.disk.close();
  }

  /** The bytes charged when the request may go on at once; undefined when it must wait. */
  private admitAtOnce(chargeBytes: number): number | undefined {
    if (this.gate) return undefined;
    const guard = this.guard;
    if (this.mode !== "logging" || chargeBytes === 0 || !guard ||
      this.spaceEntryProblem !== undefined) return 0;
    return guard.tryAdmit(this, chargeBytes) ? chargeBytes : undefined;
  }

  /**
   * Waits at the gate; then, for a logged request, for the guard's admission: the bytes charged
   * (0 when nothing was). No room: emergency mode starts, and the request waits for it.
   */
  private async admit(chargeBytes: number): Promise<number> {
    for (;;) {
      while (this.gate) {
        assert(this.waiters < gateWaitersMax, "requests waiting at the gate within their limit");
        this.waiters++;
        await this.gate.finally(() => this.waiters--);
      }
      const guard = this.guard;
      if (this.mode !== "logging" || chargeBytes === 0 || !guard ||
        this.spaceEntryProblem !== undefined) return 0;
      const fits = guard.tryAdmit(this, chargeBytes) ||
        await guard.admitMeasured(this, chargeBytes);
      if (fits && !this.gate && this.mode === "logging") return chargeBytes;
      if (fits) {
        guard.settle(this, chargeBytes); // the mode changed while measuring: decide again
        continue;
      }
      if (!this.gate && this.mode === "logging") this.enterForSpace(chargeBytes);
    }
  }

  /** Starts emergency mode because a write found no room (the gate holds requests at once). */
  private enterForSpace(chargeBytes: number): void {
    this.onShortOfSpace?.(chargeBytes);
    this.enter().catch((error: unknown) => {
      // The log could not even be drained: writes go on to the translog, which reports why.
      this.spaceEntryProblem = error;
    });
    assert(this.gate !== undefined, "entering emergency mode holds requests at once");
  }

  private async phase1Quiesce(): Promise<() => void> {
    let open!: () => void;
    this.gate = new Promise<void>((resolve) => { open = resolve; });
    while (this.inFlight > 0) await new Promise<void>((resolve) => { this.idle = resolve; });
    return () => {
      this.gate = undefined;
      open();
    };
  }

  private async phase2Gap(): Promise<void> {
    try {
      await this.translog.markGap();
      this.gapProblem = "";
    } catch (error) {
      // Direct writes after a history the log does not mark as missing would let a secondary
      // replay past them as if nothing were missing: never switch, fail the writes instead.
      this.gapProblem = error instanceof Error ? error.message : String(error);
      this.broken = new BlockError("EIO",
        `emergency mode's gap record is not durable: ${this.gapProblem}`, { cause: error });
      throw this.broken;
    }
  }

  private async route(
    action: (device: BlockDevice) => Promise<void>, chargeBytes = 0, modifies = false,
  ): Promise<void> {
    let charged: number;
    for (;;) {
      // The common case decides without waiting: no switch under way, and room in the guard.
      charged = this.admitAtOnce(chargeBytes) ?? await this.admit(chargeBytes);
      // Counted in the same step as this check: a switch that began while admission resumed
      // (another request's enter) quiesced without this request, so it decides again.
      if (!this.gate) break;
      if (charged > 0) this.guard?.settle(this, charged);
    }
    if (modifies && this.broken) {
      if (charged > 0) this.guard?.settle(this, charged);
      throw this.broken;
    }
    const device = this.mode === "direct" ? this.disk : this.translog;
    this.inFlight++;
    try {
      await action(device);
    } finally {
      if (charged > 0) this.guard?.settle(this, charged);
      this.inFlight--;
      if (this.inFlight === 0) {
        const idle = this.idle;
        this.idle = undefined;
        idle?.();
      }
    }
  }
}

/** The record headers a trim or write-zeroes of `lengthBytes` appends (one per piece). */
function rangeChargeBytes(lengthBytes: number): number {
  return writeChargeBytes(0) * Math.max(1, Math.ceil(lengthBytes / recordRangeBytesMax));
}
