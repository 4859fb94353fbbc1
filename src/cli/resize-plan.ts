/** What `mars resize` decides: the new size from the wish and every member's disk, or why not. */
import { MarsError } from "../lib/errors.ts";

/** Without SIZE the resource grows to a whole number of these (the kernel's largest block). */
export const resizeAlignmentBytes = 4096;

export interface MemberDisk {
  readonly host: string;
  /** Its disk's size as last measured; undefined when no measurement was ever published. */
  readonly diskBytes: number | undefined;
  /** Measured for this command (false: an older measurement, its engine did not answer). */
  readonly measuredNow: boolean;
}

/**
 * The size to grow `resource` to: `wantedBytes`, or without it the largest size every
 * member's disk allows (rounded down to `resizeAlignmentBytes`). Equal to `currentBytes`:
 * nothing to do. Refused (exit 4): shrinking, a member whose disk is too small or unknown.
 */
export function planResize(
  resource: string, currentBytes: number, wantedBytes: number | undefined,
  disks: readonly MemberDisk[],
): number {
  if (wantedBytes !== undefined && wantedBytes < currentBytes) {
    throw new MarsError("refused", `${resource} has ${currentBytes} bytes: shrinking to ` +
      `${wantedBytes} is not supported (a resource only grows)`);
  }
  for (const disk of disks) {
    if (disk.diskBytes === undefined) {
      throw new MarsError("refused", `the disk size of ${disk.host}, a member of ${resource}, ` +
        "is unknown (its engine has not measured it yet: start it there, then try again)");
    }
  }
  const smallest = Math.min(...disks.map((disk) => disk.diskBytes!));
  const largestAllowed = Math.floor(smallest / resizeAlignmentBytes) * resizeAlignmentBytes;
  const target = wantedBytes ?? Math.max(currentBytes, largestAllowed);
  for (const disk of disks) {
    if (disk.diskBytes! < target) {
      const when = disk.measuredNow ? "" : " as last measured (its engine did not answer now)";
      throw new MarsError("refused", `the disk of ${disk.host} has ${disk.diskBytes} bytes` +
        `${when}: too small for ${resource} at ${target} bytes (grow it first)`);
    }
  }
  return target;
}
