/** Emergency mode for one primary: writes bypass the full log and go straight to the disk. */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import type {
  BlockCapabilities, BlockDevice, WriteFlags, ZeroFlags,
} from "../block/types.ts";
import type { Translog } from "../translog/translog.ts";

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
  readonly sizeBytes: number;
  readonly capabilities: BlockCapabilities;
  mode: EmergencyMode = "logging";
  /** Why the gap record could not be written, when it could not (the log was already full). */
  gapProblem = "";
  private inFlight = 0;
  private idle: (() => void) | undefined;
  private gate: Promise<void> | undefined;
  private waiters = 0;

  constructor(readonly translog: Translog, private readonly disk: BlockDevice) {
    assert(disk.sizeBytes >= translog.sizeBytes, "the direct handle covers the device");
    this.sizeBytes = translog.sizeBytes;
    this.capabilities = translog.capabilities;
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
    return this.route((device) => device.write(offset, data, flags));
  }

  flush(): Promise<void> {
    return this.route((device) => device.flush());
  }

  trim(offset: number, lengthBytes: number, flags: WriteFlags): Promise<void> {
    return this.route((device) => device.trim(offset, lengthBytes, flags));
  }

  writeZeroes(offset: number, lengthBytes: number, flags: ZeroFlags): Promise<void> {
    return this.route((device) => device.writeZeroes(offset, lengthBytes, flags));
  }

  /**
   * Enters emergency mode: phase1Quiesce (hold new requests, let running ones finish),
   * phase2Gap (a durable gap record, best effort), phase3Drain (everything logged is on the
   * disk), then requests go to the disk directly.
   */
  async enter(): Promise<void> {
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
      // A log that cannot take even the gap record fails the drain below as well.
      if (!isMarsError(error)) throw error;
      this.gapProblem = error.message;
    }
  }

  private async route(action: (device: BlockDevice) => Promise<void>): Promise<void> {
    while (this.gate) {
      assert(this.waiters < gateWaitersMax, "requests waiting at the gate within their limit");
      this.waiters++;
      await this.gate.finally(() => this.waiters--);
    }
    const device = this.mode === "direct" ? this.disk : this.translog;
    this.inFlight++;
    try {
      await action(device);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) {
        const idle = this.idle;
        this.idle = undefined;
        idle?.();
      }
    }
  }
}
