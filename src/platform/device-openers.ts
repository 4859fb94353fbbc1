/** Who holds a local block device open (mounts, holders, swap, processes): a handover waits. */
import * as fs from "node:fs";

/** Descriptions listed at most (the count of the rest is added). */
export const deviceOpenersListedMax = 8;
/** A /proc scan serves the probes of one moment (every kernel device of the engine). */
const processScanReuseMs = 200;
/** Not in node's typings; the Linux value. */
const closeOnExecFlag = 0o2000000;

export interface DeviceOpenersOptions {
  /**
   * Also claim the device exclusively for a moment (O_EXCL): it fails with EBUSY for any holder
   * the kernel knows of, a lazily unmounted file system included. A mount at that very instant
   * fails too, so this is for the moment of stepping down, not for periodic looks.
   */
  readonly claimProbe: boolean;
}

interface DeviceNumber {
  readonly major: bigint;
  readonly minor: bigint;
  readonly rdev: bigint;
}

/** The device or one of its partitions, with the name people know it by. */
interface NamedDevice extends DeviceNumber {
  readonly path: string;
}

/**
 * What holds `devicePath` open besides this process, as words for people ([] when closed or
 * when the device does not exist). Looks at every mount namespace's mounts, sysfs holders
 * (dm, md), swap, and every other process's open files; with `claimProbe`, the O_EXCL open.
 */
export async function deviceOpeners(
  devicePath: string, options: DeviceOpenersOptions,
): Promise<string[]> {
  const whole = deviceNumberOf(devicePath);
  if (!whole) return [];
  const devices = [{ ...whole, path: devicePath }, ...partitionsOf(whole)];
  const processes = processesWithDevices(options.claimProbe);
  const found = devices.flatMap((device) => [
    ...mountsOf(device).map((point) => `${device.path} mounted at ${point}`),
    ...holdersOf(device).map((holder) => `${device.path} held by ${holder}`),
    ...(swapOn(device) ? [`${device.path} used as swap`] : []),
    ...holding(processes, device)
      .map((process) => `${device.path} open by pid ${process.pid} (${process.command})`),
  ]);
  if (found.length === 0 && options.claimProbe && await claimedElsewhere(devicePath)) {
    found.push(`${devicePath} claimed by another holder (busy)`);
  }
  if (found.length <= deviceOpenersListedMax) return found;
  return [...found.slice(0, deviceOpenersListedMax),
    `and ${found.length - deviceOpenersListedMax} more`];
}

function deviceNumberOf(path: string): DeviceNumber | undefined {
  try {
    const status = fs.statSync(path, { bigint: true });
    return status.isBlockDevice() ? split(status.rdev) : undefined;
  } catch {
    return undefined;
  }
}

/** Partitions of a whole disk (/sys/dev/block/M:N/NAMEpK/dev), as /dev/NAMEpK. */
function partitionsOf(whole: DeviceNumber): NamedDevice[] {
  const directory = `/sys/dev/block/${whole.major}:${whole.minor}`;
  let entries: string[];
  try {
    entries = fs.readdirSync(directory);
  } catch {
    return [];
  }
  return entries.flatMap((name) => {
    const numbers = readText(`${directory}/${name}/dev`)?.trim().split(":");
    if (!numbers || numbers.length !== 2 || !fs.existsSync(`${directory}/${name}/partition`)) {
      return [];
    }
    const major = BigInt(numbers[0]!);
    const minor = BigInt(numbers[1]!);
    const rdev = ((major & 0xfffn) << 8n) | ((major & ~0xfffn) << 32n) | (minor & 0xffn) |
      ((minor & ~0xffn) << 12n);
    return [{ major, minor, rdev, path: `/dev/${name}` }];
  });
}

/** Linux's dev_t encoding (major in bits 8–19 and 32–43, minor in bits 0–7 and 20–31). */
function split(rdev: bigint): DeviceNumber {
  const major = ((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn);
  const minor = (rdev & 0xffn) | ((rdev >> 12n) & ~0xffn);
  return { major, minor, rdev };
}

function readText(path: string): string | undefined {
  try {
    return fs.readFileSync(path, "utf8");
  } catch {
    return undefined;
  }
}

function numericEntries(directory: string): string[] {
  try {
    return fs.readdirSync(directory).filter((name) => /^\d+$/.test(name));
  } catch {
    return [];
  }
}

/**
 * Mount points of the device in every mount namespace a process here lives in: by the device
 * number of the mount, or by its source (btrfs shows an anonymous device number).
 */
function mountsOf(device: DeviceNumber): string[] {
  const wanted = `${device.major}:${device.minor}`;
  const sources = new Map<string, boolean>();
  const isDevice = (source: string) => {
    if (!source.startsWith("/dev/")) return false;
    if (!sources.has(source)) sources.set(source, deviceNumberOf(source)?.rdev === device.rdev);
    return sources.get(source)!;
  };
  const seen = new Set<string>();
  const points = new Set<string>();
  for (const pid of ["self", ...numericEntries("/proc")]) {
    let namespace: string;
    try {
      namespace = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
      continue;
    }
    if (seen.has(namespace)) continue;
    seen.add(namespace);
    for (const line of (readText(`/proc/${pid}/mountinfo`) ?? "").split("\n")) {
      const fields = line.split(" ");
      // After the optional fields, " - " is followed by the type and the source.
      const source = unescapeMountField(fields[fields.indexOf("-") + 2] ?? "");
      if ((fields[2] === wanted || isDevice(source)) && fields[4]) {
        points.add(unescapeMountField(fields[4]));
      }
    }
  }
  return [...points];
}

/** mountinfo writes space, tab, newline and backslash as octal escapes. */
function unescapeMountField(text: string): string {
  return text.replace(/\\([0-7]{3})/g, (_, octal: string) => String.fromCharCode(
    Number.parseInt(octal, 8)));
}

/** Block devices stacked on this one (device mapper, md): /sys/dev/block/M:N/holders. */
function holdersOf(device: DeviceNumber): string[] {
  try {
    return fs.readdirSync(`/sys/dev/block/${device.major}:${device.minor}/holders`);
  } catch {
    return [];
  }
}

function swapOn(device: DeviceNumber): boolean {
  const lines = (readText("/proc/swaps") ?? "").split("\n").slice(1);
  return lines.some((line) => {
    const path = line.split(/\s+/)[0];
    return path !== undefined && path.startsWith("/dev/") &&
      deviceNumberOf(path)?.rdev === device.rdev;
  });
}

interface Holder {
  readonly pid: number;
  readonly command: string;
  readonly rdev: bigint;
}

let lastScan: { readonly atMs: number; readonly holders: Holder[] } | undefined;

/** Other processes' open block devices: a fresh scan, or one a moment old unless `fresh`. */
function processesWithDevices(fresh: boolean): Holder[] {
  const nowMs = performance.now();
  if (fresh || !lastScan || nowMs - lastScan.atMs > processScanReuseMs) {
    lastScan = { atMs: nowMs, holders: scanProcesses() };
  }
  return lastScan.holders;
}

/** The processes holding `device`, each once. */
function holding(processes: readonly Holder[], device: DeviceNumber): Holder[] {
  const matching = processes.filter((holder) => holder.rdev === device.rdev);
  return [...new Map(matching.map((holder) => [holder.pid, holder])).values()];
}

function scanProcesses(): Holder[] {
  const holders: Holder[] = [];
  const own = String(process.pid);
  for (const pid of numericEntries("/proc")) {
    if (pid === own) continue;
    let descriptors: string[];
    try {
      descriptors = fs.readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue; // exited, or not ours to look at
    }
    for (const descriptor of descriptors) {
      const link = `/proc/${pid}/fd/${descriptor}`;
      let target: string;
      try {
        target = fs.readlinkSync(link);
      } catch {
        continue;
      }
      // Only device nodes are looked at: a stat of any other file could wait on a network FS.
      if (!target.startsWith("/dev/")) continue;
      try {
        const status = fs.statSync(link, { bigint: true });
        if (!status.isBlockDevice()) continue;
        const command = (readText(`/proc/${pid}/comm`) ?? "?").trim();
        holders.push({ pid: Number(pid), command, rdev: status.rdev });
      } catch {
        continue;
      }
    }
  }
  return holders;
}

/**
 * O_EXCL open of the block device: EBUSY while anyone claims it (a mount, dm, md, swap, another
 * exclusive opener). Runs off the event loop: the last close of a block device writes its dirty
 * pages back, and this process may be the one that has to answer those writes.
 */
async function claimedElsewhere(devicePath: string): Promise<boolean> {
  const { O_RDONLY, O_EXCL, O_NONBLOCK } = fs.constants;
  try {
    const flags = O_RDONLY | O_EXCL | O_NONBLOCK | closeOnExecFlag;
    const handle = await fs.promises.open(devicePath, flags);
    await handle.close();
    return false;
  } catch (error) {
    return (error as { code?: string }).code === "EBUSY";
  }
}
