/** The kernel nbd driver over generic netlink: attach, re-attach, status, detach, stable names. */
import { ptr } from "bun:ffi";
import * as fs from "node:fs";
import { MarsError } from "../lib/errors.ts";
import { describeErrno, lastErrno, libc } from "./libc.ts";
import {
  attributeNested, attributeString, attributeU32, attributeU64, GenericNetlink, NetlinkError,
  parseAttributes, readU32,
} from "./netlink.ts";


// include/uapi/linux/nbd-netlink.h
const familyName = "nbd";
const familyVersion = 1;
const NbdCommand = { connect: 1, disconnect: 2, reconfigure: 3, status: 5 } as const;
const NbdAttribute = {
  index: 1, sizeBytes: 2, blockSizeBytes: 3, timeout: 4, serverFlags: 5, clientFlags: 6,
  sockets: 7, deadConnectionTimeout: 8, deviceList: 9, backendIdentifier: 10,
} as const;
const socketItem = 1;
const socketFd = 1;
const deviceItem = 1;
const deviceIndex = 1;
const deviceConnected = 2;

const addressFamilyUnix = 1;
const socketStream = 1;
const socketCloseOnExec = 0o2000000;
const prctlSetIoFlusher = 57;
const mlockCurrent = 1;
const mlockFuture = 2;
const mlockOnFault = 4;
/** Attempts to re-attach while the kernel has not yet noticed the old socket died. */
const reconnectAttemptsMax = 50;

/** Where the stable names live: /dev/mars/<resource> → /dev/nbdN. */
export const stableNameDirectory = "/dev/mars";

export interface KernelAttachOptions {
  readonly sizeBytes: number;
  readonly blockSizeBytes: number;
  /** NBD transmission flags, as the handshake would have sent them. */
  readonly transmissionFlags: number;
  /** A request unanswered this long makes the kernel treat the connection as dead. */
  readonly timeoutSeconds: number;
  /** How long the kernel holds I/O for a re-attach after the connection died. */
  readonly deadConnectionTimeoutSeconds: number;
  /** Names the server; a re-attach is refused unless it names the same one. */
  readonly backendIdentifier: string;
}

export interface KernelAttachment {
  readonly index: number;
  readonly devicePath: string;
  /** Our end of the socketpair, to be served (the kernel holds the other end). */
  readonly serverFd: number;
  readonly reattached: boolean;
}

function errnoText(): string {
  const errno = lastErrno();
  return `${describeErrno(errno)} (errno ${errno})`;
}

/** Opens netlink and resolves the nbd family, or explains that the driver is missing. */
function openNbdFamily(): { netlink: GenericNetlink; family: number } {
  const netlink = GenericNetlink.open();
  const family = netlink.resolveFamily(familyName);
  if (family === undefined) {
    netlink.close();
    throw new MarsError("not-found", "kernel nbd driver not available: modprobe nbd");
  }
  return { netlink, family };
}

function withFamily<T>(action: (netlink: GenericNetlink, family: number) => T): T {
  const { netlink, family } = openNbdFamily();
  try {
    return action(netlink, family);
  } finally {
    netlink.close();
  }
}

export function kernelDriverAvailable(): boolean {
  try {
    withFamily(() => undefined);
    return true;
  } catch {
    return false;
  }
}

function createSocketPair(): [number, number] {
  const descriptors = new Int32Array(2);
  const flags = socketStream | socketCloseOnExec;
  if (libc.symbols.socketpair(addressFamilyUnix, flags, 0, ptr(descriptors)) !== 0) {
    throw new MarsError("io", `socketpair: ${errnoText()}`);
  }
  return [descriptors[0]!, descriptors[1]!];
}

function socketsAttribute(kernelFd: number): Uint8Array {
  return attributeNested(NbdAttribute.sockets, [
    attributeNested(socketItem, [attributeU32(socketFd, kernelFd)]),
  ]);
}

/**
 * Attaches the export to /dev/nbd<index> (the kernel picks a free one when `index` is
 * undefined). When that device is still configured from an earlier run, the new socket
 * replaces the dead one (RECONFIGURE), so I/O that waited for us completes.
 */
export async function attachKernelDevice(
  options: KernelAttachOptions, index: number | undefined,
): Promise<KernelAttachment> {
  const reattach = index !== undefined && kernelDeviceStatus(index)?.connected === true;
  const [kernelFd, serverFd] = createSocketPair();
  try {
    const chosen = reattach
      ? await reconfigure(index!, kernelFd, options)
      : connect(index, kernelFd, options);
    return {
      index: chosen, devicePath: `/dev/nbd${chosen}`, serverFd, reattached: reattach,
    };
  } catch (error) {
    libc.symbols.close(serverFd);
    throw error;
  } finally {
    libc.symbols.close(kernelFd); // the kernel holds its own reference to its end
  }
}

function connect(index: number | undefined, kernelFd: number, options: KernelAttachOptions) {
  return withFamily((netlink, family) => {
    const attributes = [
      attributeU64(NbdAttribute.sizeBytes, options.sizeBytes),
      attributeU64(NbdAttribute.blockSizeBytes, options.blockSizeBytes),
      attributeU64(NbdAttribute.serverFlags, options.transmissionFlags),
      attributeU64(NbdAttribute.timeout, options.timeoutSeconds),
      attributeU64(NbdAttribute.deadConnectionTimeout, options.deadConnectionTimeoutSeconds),
      attributeString(NbdAttribute.backendIdentifier, options.backendIdentifier),
      socketsAttribute(kernelFd),
    ];
    if (index !== undefined) attributes.unshift(attributeU32(NbdAttribute.index, index));
    const replies = netlink.request(family, NbdCommand.connect, familyVersion, attributes);
    const chosen = readU32(parseAttributes(replies[0] ?? new Uint8Array(0))
      .get(NbdAttribute.index)?.[0]) ?? index;
    if (chosen === undefined) throw new MarsError("io", "nbd connect: no device index returned");
    return chosen;
  });
}

async function reconfigure(
  index: number, kernelFd: number, options: KernelAttachOptions,
): Promise<number> {
  for (let attempt = 1; ; attempt++) {
    try {
      withFamily((netlink, family) => netlink.request(family, NbdCommand.reconfigure,
        familyVersion, [
          attributeU32(NbdAttribute.index, index),
          attributeU64(NbdAttribute.timeout, options.timeoutSeconds),
          attributeU64(NbdAttribute.deadConnectionTimeout, options.deadConnectionTimeoutSeconds),
          attributeString(NbdAttribute.backendIdentifier, options.backendIdentifier),
          socketsAttribute(kernelFd),
        ]));
      return index;
    } catch (error) {
      // ENOSPC: no dead socket to replace yet (the kernel notices the old one's end shortly).
      const retry = error instanceof NetlinkError && error.errno === 28;
      if (!retry || attempt >= reconnectAttemptsMax) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

export interface KernelDeviceStatus {
  readonly index: number;
  readonly connected: boolean;
}

/** STATUS of one device (or undefined when it does not exist), without the index: all. */
export function kernelDeviceStatus(index: number): KernelDeviceStatus | undefined {
  return kernelDeviceStatuses(index).find((entry) => entry.index === index);
}

export function kernelDeviceStatuses(index?: number): KernelDeviceStatus[] {
  return withFamily((netlink, family) => {
    const attributes = index === undefined ? [] : [attributeU32(NbdAttribute.index, index)];
    let replies: Uint8Array[];
    try {
      replies = netlink.request(family, NbdCommand.status, familyVersion, attributes);
    } catch (error) {
      if (error instanceof NetlinkError && error.errno === 2) return [];
      throw error;
    }
    const statuses: KernelDeviceStatus[] = [];
    for (const reply of replies) {
      for (const list of parseAttributes(reply).get(NbdAttribute.deviceList) ?? []) {
        for (const item of parseAttributes(list).get(deviceItem) ?? []) {
          const fields = parseAttributes(item);
          const found = readU32(fields.get(deviceIndex)?.[0]);
          const connected = fields.get(deviceConnected)?.[0]?.[0] === 1;
          if (found !== undefined) statuses.push({ index: found, connected });
        }
      }
    }
    return statuses;
  });
}

/**
 * Tells the kernel a connected device's new size (mars resize): RECONFIGURE with SIZE_BYTES,
 * which the kernel applies at once (drivers/block/nbd.c nbd_genl_reconfigure → size set,
 * since Linux 5.3); the backend identifier must match the one the device was connected with.
 */
export function resizeKernelDevice(
  index: number, backendIdentifier: string, sizeBytes: number,
): void {
  withFamily((netlink, family) => netlink.request(family, NbdCommand.reconfigure, familyVersion,
    [
      attributeU32(NbdAttribute.index, index),
      attributeString(NbdAttribute.backendIdentifier, backendIdentifier),
      attributeU64(NbdAttribute.sizeBytes, sizeBytes),
    ]));
}

/** DISCONNECT: the kernel sends NBD_CMD_DISC on the socket and releases the device. */
export function detachKernelDevice(index: number): void {
  withFamily((netlink, family) => netlink.request(family, NbdCommand.disconnect, familyVersion,
    [attributeU32(NbdAttribute.index, index)]));
}

/**
 * A user-space server behind a local block device must not wait for memory reclaim that in
 * turn waits for this very device. PR_SET_IO_FLUSHER makes the kernel avoid I/O-issuing
 * reclaim in this thread (and in threads it starts later); mlockall keeps our pages resident.
 * Returns what could not be done (e.g. without CAP_SYS_RESOURCE or CAP_IPC_LOCK).
 */
export function protectAgainstReclaimDeadlock(): string[] {
  const problems: string[] = [];
  if (libc.symbols.prctl(prctlSetIoFlusher, 1, 0, 0, 0) !== 0) {
    problems.push(`prctl(PR_SET_IO_FLUSHER): ${errnoText()}`);
  }
  if (libc.symbols.mlockall(mlockCurrent | mlockFuture | mlockOnFault) !== 0) {
    problems.push(`mlockall: ${errnoText()}`);
  }
  return problems;
}

/** Points /dev/mars/<resource> at the device; replaces a stale link. */
export function linkStableName(resource: string, devicePath: string): string {
  const link = `${stableNameDirectory}/${resource}`;
  try {
    fs.mkdirSync(stableNameDirectory, { recursive: true, mode: 0o755 });
    fs.rmSync(link, { force: true });
    fs.symlinkSync(devicePath, link);
  } catch (error) {
    throw new MarsError("io", `cannot link ${link} → ${devicePath}: ${String(error)}`);
  }
  return link;
}

/** The device index a stable name points at, if the link exists. */
export function readStableName(resource: string): number | undefined {
  try {
    const target = fs.readlinkSync(`${stableNameDirectory}/${resource}`);
    const match = /\/dev\/nbd(\d+)$/.exec(target);
    return match ? Number(match[1]) : undefined;
  } catch {
    return undefined;
  }
}

export function unlinkStableName(resource: string): void {
  fs.rmSync(`${stableNameDirectory}/${resource}`, { force: true });
}
