/** The resource "attach" step behind one interface: claim the disk, export it when primary. */
import { MarsError } from "../lib/errors.ts";
import { openFileDevice, type FileDevice } from "../block/file.ts";
import { BoundedDevice } from "../block/resizable.ts";
import type { BlockDevice } from "../block/types.ts";
import type { PayloadBuffers } from "../nbd/payload-buffers.ts";
import { NbdServer } from "../nbd/server.ts";
import type { Clock, FileLocks, Network, Storage } from "../platform/types.ts";
import type { LogPosition } from "../log/position.ts";
import { openTranslog } from "../translog/translog.ts";
import { EmergencyDevice } from "../retention/emergency.ts";
import {
  forgetExportedSize, readExportedSize, writeExportedSize, zeroBeforeExport, zeroRange,
} from "./grown-range.ts";

export interface AttachSpec {
  readonly resource: string;
  /** This host (the origin named in the logfiles it writes). */
  readonly host: string;
  readonly disk: string;
  readonly sizeBytes: number;
  readonly primary: boolean;
  /** Where the NBD unix socket goes when this host exports the device. */
  readonly socketPath: string;
  /** The resource's directory in the home: logfiles and the writeback position. */
  readonly logDirectory: string;
}

export interface Attached {
  /** How clients reach the device ("" when not exported). */
  readonly exportAddress: string;
  /** The primary's log positions, which replication serves and publishes. */
  readonly primaryLog?: {
    readonly logEnd: LogPosition;
    readonly durableEnd: LogPosition;
    readonly writebackPosition: LogPosition;
    readonly emergency?: boolean;
  };
  /** The primary's device view (translog: overlay + disk), which a full sync reads. */
  readonly primaryDevice?: BlockDevice;
  /** The primary's export, which can switch to emergency mode (src/retention). */
  readonly emergency?: EmergencyDevice;
  /** Primary: clients connected to the export now (a handover waits for none; docs/roles.md). */
  openConnections?(): number;
  /**
   * Primary with a kernel device: what holds /dev/nbdN open (mounts, dm/md, swap, processes),
   * as words for people; [] when closed. `stepping`: the precise look taken right before
   * stepping down (it claims the device for a moment), else the periodic one.
   */
  kernelHolders?(stepping: boolean): Promise<readonly string[]>;
  /** Primary: the end of the log its own logfiles continue (undefined: a new history). */
  readonly continuedFrom?: LogPosition;
  /**
   * Primary: serves the device up to `sizeBytes` from now on (mars resize; the resource only
   * grows). The disk is measured again first; too small: disk-too-small, nothing changes.
   * Resolves to what did not follow (the kernel device's size), "" when everything did.
   */
  grow?(sizeBytes: number): Promise<string>;
  detach(): Promise<void>;
}

/**
 * Attaching is one call, so the data path can change behind it: the primary serves the disk
 * through the translog (every write logged in the resource's directory, then written back)
 * over an NBD unix socket; the kernel nbd attach and the secondary's replay plug in here
 * without touching the reconciler.
 */
export interface ResourceAttacher {
  attach(spec: AttachSpec): Promise<Attached>;
}

/**
 * Attaches an NBD server's export to the kernel driver (/dev/nbdN); wired by the CLI. It
 * reports its own failures and resolves to undefined: the unix socket export remains.
 */
export type KernelAttach = (server: NbdServer, resource: string) =>
  Promise<KernelDevice | undefined>;

export interface KernelDevice {
  readonly devicePath: string;
  /** What holds the device open besides the engine ([] = closed); see Attached. */
  holders(stepping: boolean): Promise<readonly string[]>;
  /** Tells the kernel the device's new size (mars resize); throws when it cannot. */
  resize(sizeBytes: number): void;
  detach(): void;
}

export interface AttacherEffects {
  /** Present when the kernel nbd driver is available; otherwise only the unix socket. */
  readonly kernel?: KernelAttach;
  readonly clock: Clock;
  readonly storage: Storage;
  readonly locks: FileLocks;
  readonly network: Network;
  /**
   * Where NBD payloads and read replies live; `mars run` passes memory the io engine uses as
   * is (no bounce copy), like `mars serve`. Without it, the heap.
   */
  readonly payloadBuffers?: PayloadBuffers;
}

/** Checks that `disk` exists, is large enough and is not in use, and claims it. */
export async function claimDisk(effects: AttacherEffects, disk: string, sizeBytes: number) {
  const status = await effects.storage.files.status(disk);
  if (!status) throw new MarsError("not-found", `disk ${disk} does not exist`);
  if (status.isDirectory) throw new MarsError("refused", `disk ${disk} is a directory`);
  if (status.sizeBytes < sizeBytes) {
    throw new MarsError("disk-too-small",
      `disk ${disk} has ${status.sizeBytes} bytes, the resource needs ${sizeBytes}`);
  }
  if (status.isBlockDevice) {
    // O_EXCL on a block device fails while it is mounted or claimed by another holder.
    const fd = await effects.storage.files.open(disk, { exclusive: true }).catch((error) => {
      throw new MarsError("disk-in-use", `disk ${disk} is in use (${String(error)})`);
    });
    await effects.storage.files.close(fd);
  }
  const lock = await effects.locks.tryLock(disk);
  if (!lock) throw new MarsError("disk-in-use", `disk ${disk} is in use by another process`);
  return { lock, sizeBytes: status.sizeBytes };
}

/** The primary's data path: disk → translog → NBD server on a unix socket. */
async function exportPrimary(effects: AttacherEffects, spec: AttachSpec) {
  // Writeback only: aligned writes skip the page cache (file.ts, directWrites).
  const backing = await openFileDevice(effects.storage, spec.disk, { directWrites: true });
  const translog = await openTranslog({
    storage: effects.storage, clock: effects.clock, directory: spec.logDirectory,
    resource: spec.resource, host: spec.host, backing,
  }).catch(async (error) => {
    await backing.close();
    throw error;
  });
  // A second handle on the disk, used only in emergency mode (writes straight to the disk).
  const direct = await openFileDevice(effects.storage, spec.disk).catch(async (error) => {
    await translog.close();
    throw error;
  });
  const device = new EmergencyDevice(translog, direct);
  try {
    // Before any client (or the kernel device) sees the size: a growth cut short is redone.
    await zeroBeforeExport(effects.storage, spec.logDirectory, device, spec.sizeBytes);
  } catch (error) {
    await device.close();
    throw error;
  }
  // Clients see the resource's size, which may be less than the disk's.
  const exported = new BoundedDevice(device, spec.sizeBytes);
  const server = new NbdServer({
    exports: [{ name: spec.resource, device: exported }],
    ...(effects.payloadBuffers ? { buffers: effects.payloadBuffers } : {}),
  });
  try {
    await effects.storage.files.remove(spec.socketPath);
    const listener = await effects.network.listen(
      { kind: "unix", path: spec.socketPath }, server.accept);
    return { server, device, exported, disks: [backing, direct], listener };
  } catch (error) {
    await device.close();
    throw error;
  }
}

/** What growing one primary's export works with. */
interface GrowingExport {
  readonly effects: AttacherEffects;
  readonly spec: AttachSpec;
  readonly disks: readonly FileDevice[];
  /** Below the bound: the translog (or, in emergency mode, the disk), covering the disk. */
  readonly device: BlockDevice;
  readonly exported: BoundedDevice;
  readonly resizeKernel: ((sizeBytes: number) => void) | undefined;
}

/**
 * Grows a primary's export: both handles on the disk measure it again; write-zeroes for the
 * added range go into the log and become durable (every secondary replays them, so the grown
 * range reads as zeroes everywhere), the size reached is recorded; only then the bound moves
 * (new NBD connections see the new size, every connection may use it) and the kernel device
 * is told. A disk still too small refuses, and nothing changes.
 */
async function growExport(growing: GrowingExport, sizeBytes: number): Promise<string> {
  const { effects, spec, disks, device, exported } = growing;
  if (sizeBytes <= exported.sizeBytes) return "";
  for (const handle of disks) {
    const measured = await handle.remeasure();
    if (measured < sizeBytes) {
      throw new MarsError("disk-too-small",
        `disk ${spec.disk} has ${measured} bytes, the resource needs ${sizeBytes}`);
    }
  }
  // A range the export reached before (a size key written down meanwhile) holds clients' data.
  const reachedBytes = await readExportedSize(effects.storage, spec.logDirectory);
  const fromBytes = Math.max(exported.sizeBytes, reachedBytes ?? 0);
  if (fromBytes < sizeBytes) {
    await zeroRange(device, { fromBytes, toBytes: sizeBytes });
    await writeExportedSize(effects.storage, spec.logDirectory, sizeBytes);
  }
  exported.grow(sizeBytes);
  try {
    growing.resizeKernel?.(sizeBytes);
    return "";
  } catch (error) {
    return `the kernel device kept its earlier size (new NBD connections see ${sizeBytes} ` +
      `bytes; detach and attach the resource to renew /dev/nbdN): ${String(error)}`;
  }
}

export function directAttacher(effects: AttacherEffects): ResourceAttacher {
  return {
    async attach(spec) {
      const { lock } = await claimDisk(effects, spec.disk, spec.sizeBytes);
      if (!spec.primary) {
        await forgetExportedSize(effects.storage, spec.logDirectory).catch(async (error) => {
          await lock.release();
          throw error;
        });
        return { exportAddress: "", detach: () => lock.release() };
      }
      try {
        const { server, device, exported, disks, listener } = await exportPrimary(effects, spec);
        const socketAddress = `nbd+unix:///${spec.resource}?socket=${spec.socketPath}`;
        const kernel = effects.kernel ? await effects.kernel(server, spec.resource) : undefined;
        return {
          exportAddress: kernel ? `${kernel.devicePath} ${socketAddress}` : socketAddress,
          primaryLog: device,
          primaryDevice: exported,
          emergency: device,
          // The kernel driver's own connection is not an opener of /dev/nbdN.
          openConnections: () => Math.max(0, server.connectionCount - (kernel ? 1 : 0)),
          ...(kernel ? { kernelHolders: (stepping: boolean) => kernel.holders(stepping) } : {}),
          ...(device.translog.continuedFrom
            ? { continuedFrom: device.translog.continuedFrom } : {}),
          grow: (sizeBytes) => growExport(
            { effects, spec, disks, device, exported, resizeKernel: kernel?.resize }, sizeBytes),
          async detach() {
            // Graceful: no new clients, every reply sent, the log flushed, the writeback
            // position persisted (translog close), then the disk is released.
            kernel?.detach();
            listener.close();
            await server.shutdown();
            await device.close();
            await effects.storage.files.remove(spec.socketPath);
            await lock.release();
          },
        };
      } catch (error) {
        await lock.release();
        throw error;
      }
    },
  };
}
