/** `mars serve --nbd-device`: attaches the export to /dev/nbdN and names it /dev/mars/NAME. */
import { MarsError } from "../../lib/errors.ts";
import { transmissionFlagsOf } from "../../nbd/protocol.ts";
import type { NbdServer } from "../../nbd/server.ts";
import {
  attachKernelDevice, detachKernelDevice, kernelDeviceStatus, kernelDriverAvailable,
  type KernelAttachOptions, linkStableName, protectAgainstReclaimDeadlock, readStableName,
  resizeKernelDevice, unlinkStableName,
} from "../../platform/nbd-kernel.ts";
import { adoptSocket } from "../../platform/network.ts";
import type { ConnectionHandlers } from "../../platform/types.ts";

/** Default seconds a kernel request may stay unanswered before the kernel drops the socket. */
export const kernelRequestTimeoutSeconds = 30;
/** Re-attach attempts in a row after the kernel dropped our socket, one second apart. */
export const reattachAttemptsMax = 10;
/** The kernel's block size is a power of two between 512 bytes and a page. */
const kernelBlockBytesMin = 512;
const kernelBlockBytesMax = 4096;

export interface KernelExport {
  readonly devicePath: string;
  readonly stableName: string;
  readonly reattached: boolean;
  /** Tells the kernel the export's new size (mars resize); throws when it cannot. */
  resize(sizeBytes: number): void;
  /** DISCONNECT and remove the stable name; problems are reported, not thrown. */
  detach(warn: (line: string) => void): void;
}

export interface KernelServeOptions {
  readonly name: string;
  readonly requested: number | "auto" | undefined;
  readonly requestTimeoutSeconds: number;
  readonly deadTimeoutSeconds: number;
  readonly warn: (line: string) => void;
}

/** The positional form the engine (`mars run`) uses; default request timeout. */
export function attachToKernel(
  server: NbdServer, name: string, requested: number | "auto" | undefined,
  deadTimeoutSeconds: number, warn: (line: string) => void,
): Promise<KernelExport> {
  return attachKernelExport(server, {
    name, requested, requestTimeoutSeconds: kernelRequestTimeoutSeconds, deadTimeoutSeconds, warn,
  });
}

export async function attachKernelExport(
  server: NbdServer, options: KernelServeOptions,
): Promise<KernelExport> {
  if (!kernelDriverAvailable()) {
    throw new MarsError("not-found", "kernel nbd driver not available: modprobe nbd");
  }
  const { name, warn } = options;
  for (const problem of protectAgainstReclaimDeadlock()) {
    warn(`reclaim-deadlock protection incomplete: ${problem}`);
  }
  const chosen = server.exports.find((entry) => entry.name === name) ?? server.exports[0]!;
  const { capabilities, sizeBytes } = chosen.device;
  const minimum = capabilities.blockSizes.minimumBytes;
  if (minimum > kernelBlockBytesMax) {
    throw new MarsError("usage", `the kernel cannot address ${minimum}-byte blocks`);
  }
  const attachOptions: KernelAttachOptions = {
    sizeBytes,
    blockSizeBytes: Math.min(kernelBlockBytesMax,
      Math.max(kernelBlockBytesMin, minimum, capabilities.blockSizes.preferredBytes)),
    transmissionFlags: transmissionFlagsOf(capabilities, false),
    timeoutSeconds: options.requestTimeoutSeconds,
    deadConnectionTimeoutSeconds: options.deadTimeoutSeconds,
    backendIdentifier: `mars:${name}`,
  };
  let detaching = false;
  let failedAttempts = 0;

  /** Serves one socket of the kernel; when the kernel drops it, attaches a new one. */
  const serveSocket = async (serverFd: number): Promise<void> => {
    // The kernel may already have queued requests: buffer until the session exists.
    const early: Uint8Array[] = [];
    let target: ConnectionHandlers | undefined;
    let closedEarly: { error?: Error } | undefined;
    const onClosed = (error?: Error) => {
      if (target) target.closed(error);
      else closedEarly = { error };
      if (!detaching) void reattach();
    };
    const connection = await adoptSocket(serverFd, {
      data: (chunk) => (target ? target.data(chunk) : early.push(Uint8Array.from(chunk))),
      drain: () => target?.drain(),
      closed: onClosed,
    });
    target = server.serveKernel(connection, chosen.name);
    for (const chunk of early.splice(0)) target.data(chunk);
    if (closedEarly) target.closed(closedEarly.error);
  };

  // The kernel drops the socket when a request outlives the timeout; the device stays
  // configured and holds its I/O, so a fresh socket (RECONFIGURE) lets it carry on.
  const reattach = async (): Promise<void> => {
    while (!detaching) {
      if (kernelDeviceStatus(first.index)?.connected !== true) {
        warn(`${first.devicePath} was disconnected from outside; not re-attaching`);
        return;
      }
      warn(`the kernel dropped ${first.devicePath}'s connection; re-attaching`);
      try {
        const again = await attachKernelDevice(attachOptions, first.index);
        failedAttempts = 0;
        await serveSocket(again.serverFd);
        return;
      } catch (error) {
        failedAttempts++;
        warn(`re-attaching ${first.devicePath} failed: ${error}`);
        if (failedAttempts >= reattachAttemptsMax) return;
        await new Promise((resolve) => setTimeout(resolve, 1000));
      }
    }
  };

  const first = await attachKernelDevice(attachOptions, resolveIndex(name, options.requested));
  await serveSocket(first.serverFd);
  if (first.reattached) {
    // Configured by an earlier run, perhaps before the resource grew (mars resize).
    try {
      resizeKernelDevice(first.index, attachOptions.backendIdentifier, chosen.device.sizeBytes);
    } catch (error) {
      warn(`${first.devicePath} keeps its earlier size: ${error}`);
    }
  }
  const stableName = linkStableName(name, first.devicePath);
  return {
    devicePath: first.devicePath,
    stableName,
    reattached: first.reattached,
    resize(sizeBytes) {
      resizeKernelDevice(first.index, attachOptions.backendIdentifier, sizeBytes);
    },
    detach(report) {
      detaching = true;
      try {
        detachKernelDevice(first.index);
      } catch (error) {
        report(`detaching ${first.devicePath} failed: ${error}`);
      }
      try {
        unlinkStableName(name);
      } catch (error) {
        report(`removing ${stableName} failed: ${error}`);
      }
    },
  };
}

/** 'auto' re-uses the device the stable name points at when it is still configured. */
function resolveIndex(name: string, requested: number | "auto" | undefined): number | undefined {
  if (typeof requested === "number") return requested;
  const previous = readStableName(name);
  if (previous === undefined) return undefined;
  return kernelDeviceStatus(previous)?.connected === true ? previous : undefined;
}
