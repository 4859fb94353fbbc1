/** `mars serve --nbd-device`: attaches the export to /dev/nbdN and names it /dev/mars/NAME. */
import { MarsError } from "../../lib/errors.ts";
import { transmissionFlagsOf } from "../../nbd/protocol.ts";
import type { NbdServer } from "../../nbd/server.ts";
import {
  attachKernelDevice, detachKernelDevice, kernelDeviceStatus, kernelDriverAvailable,
  linkStableName, protectAgainstReclaimDeadlock, readStableName, unlinkStableName,
} from "../../platform/nbd-kernel.ts";
import { adoptSocket } from "../../platform/network.ts";
import type { ConnectionHandlers } from "../../platform/types.ts";

/** Seconds a kernel request may stay unanswered before the connection counts as dead. */
export const kernelRequestTimeoutSeconds = 30;
/** The kernel's block size is a power of two between 512 bytes and a page. */
const kernelBlockBytesMin = 512;
const kernelBlockBytesMax = 4096;

export interface KernelExport {
  readonly devicePath: string;
  readonly stableName: string;
  readonly reattached: boolean;
  /** DISCONNECT and remove the stable name; problems are reported, not thrown. */
  detach(warn: (line: string) => void): void;
}

export async function attachToKernel(
  server: NbdServer, name: string, requested: number | "auto" | undefined,
  deadTimeoutSeconds: number, warn: (line: string) => void,
): Promise<KernelExport> {
  if (!kernelDriverAvailable()) {
    throw new MarsError("not-found", "kernel nbd driver not available: modprobe nbd");
  }
  for (const problem of protectAgainstReclaimDeadlock()) {
    warn(`reclaim-deadlock protection incomplete: ${problem}`);
  }
  const chosen = server.exports.find((entry) => entry.name === name) ?? server.exports[0]!;
  const { capabilities, sizeBytes } = chosen.device;
  const minimum = capabilities.blockSizes.minimumBytes;
  if (minimum > kernelBlockBytesMax) {
    throw new MarsError("usage", `the kernel cannot address ${minimum}-byte blocks`);
  }
  const blockSizeBytes = Math.min(kernelBlockBytesMax,
    Math.max(kernelBlockBytesMin, minimum, capabilities.blockSizes.preferredBytes));
  const attachment = await attachKernelDevice({
    sizeBytes, blockSizeBytes,
    transmissionFlags: transmissionFlagsOf(capabilities, false),
    timeoutSeconds: kernelRequestTimeoutSeconds,
    deadConnectionTimeoutSeconds: deadTimeoutSeconds,
    backendIdentifier: `mars:${name}`,
  }, resolveIndex(name, requested));
  // The kernel may already have queued requests: buffer until the session exists.
  const early: Uint8Array[] = [];
  let target: ConnectionHandlers | undefined;
  let closedEarly: { error?: Error } | undefined;
  const connection = await adoptSocket(attachment.serverFd, {
    data: (chunk) => (target ? target.data(chunk) : early.push(Uint8Array.from(chunk))),
    drain: () => target?.drain(),
    closed: (error) => (target ? target.closed(error) : (closedEarly = { error })),
  });
  target = server.serveKernel(connection, chosen.name);
  for (const chunk of early.splice(0)) target.data(chunk);
  if (closedEarly) target.closed(closedEarly.error);
  const stableName = linkStableName(name, attachment.devicePath);
  return {
    devicePath: attachment.devicePath,
    stableName,
    reattached: attachment.reattached,
    detach(report) {
      try {
        detachKernelDevice(attachment.index);
      } catch (error) {
        report(`detaching ${attachment.devicePath} failed: ${error}`);
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
