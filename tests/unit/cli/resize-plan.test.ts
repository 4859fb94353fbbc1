// mars resize: the SIZE parser it shares with create-resource, its plan and its refusals.
import { describe, expect, test } from "bun:test";
import { parseKey, writerMayWrite, keys } from "../../../src/cluster/keys.ts";
import { parseSize } from "../../../src/cli/commands/resource.ts";
import { planResize, resizeAlignmentBytes, type MemberDisk } from "../../../src/cli/resize-plan.ts";
import { ExitCode, MarsError } from "../../../src/lib/errors.ts";

const mib = 1024 * 1024;

function disk(host: string, diskBytes: number | undefined, measuredNow = true): MemberDisk {
  return { host, diskBytes, measuredNow };
}

function refusal(action: () => unknown): MarsError {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(MarsError);
    expect((error as MarsError).exitCode).toBe(ExitCode.refused);
    return error as MarsError;
  }
  throw new Error("expected a refusal");
}

describe("SIZE (create-resource's parser)", () => {
  test("bytes and binary suffixes", () => {
    expect(parseSize("4096", "SIZE")).toBe(4096);
    expect(parseSize("64M", "SIZE")).toBe(64 * mib);
    expect(parseSize("2g", "SIZE")).toBe(2 * 1024 * mib);
    expect(parseSize(undefined, "SIZE")).toBeUndefined();
  });

  test("anything else is a usage error naming the argument", () => {
    for (const text of ["", "1.5G", "-4", "64MB", "big", "0"]) {
      let caught: unknown;
      try {
        parseSize(text, "SIZE");
      } catch (error) {
        caught = error;
      }
      expect(caught).toBeInstanceOf(MarsError);
      expect((caught as MarsError).exitCode).toBe(ExitCode.usage);
      expect((caught as MarsError).message).toContain("SIZE");
    }
  });
});

describe("planResize", () => {
  const members = [disk("alpha", 64 * mib), disk("beta", 80 * mib)];

  test("an explicit SIZE within every disk", () => {
    expect(planResize("r1", 32 * mib, 48 * mib, members)).toBe(48 * mib);
    expect(planResize("r1", 32 * mib, 64 * mib, members)).toBe(64 * mib);
  });

  test("without SIZE: the smallest disk, rounded down to whole kernel blocks", () => {
    expect(planResize("r1", 32 * mib, undefined, members)).toBe(64 * mib);
    const odd = [disk("alpha", 64 * mib + 1000), disk("beta", 80 * mib)];
    expect(planResize("r1", 32 * mib, undefined, odd)).toBe(64 * mib);
    expect((64 * mib) % resizeAlignmentBytes).toBe(0);
  });

  test("the same size, or no room to grow, changes nothing", () => {
    expect(planResize("r1", 64 * mib, 64 * mib, members)).toBe(64 * mib);
    expect(planResize("r1", 64 * mib, undefined, members)).toBe(64 * mib);
    // A current size that is no whole block and fills the smallest disk stays as it is.
    expect(planResize("r1", 64 * mib + 1000, undefined,
      [disk("alpha", 64 * mib + 1000)])).toBe(64 * mib + 1000);
  });

  test("shrinking is refused", () => {
    const error = refusal(() => planResize("r1", 64 * mib, 32 * mib, members));
    expect(error.message).toContain("shrinking");
  });

  test("a member whose disk is too small is named with its disk size", () => {
    const error = refusal(() => planResize("r1", 32 * mib, 72 * mib, members));
    expect(error.message).toContain("alpha");
    expect(error.message).toContain(String(64 * mib));
    const stale = refusal(() => planResize("r1", 32 * mib, 72 * mib,
      [disk("alpha", 64 * mib, false), disk("beta", 80 * mib)]));
    expect(stale.message).toContain("as last measured");
  });

  test("a member whose disk size is unknown is refused", () => {
    const error = refusal(() => planResize("r1", 32 * mib, 48 * mib,
      [disk("alpha", 64 * mib), disk("gamma", undefined)]));
    expect(error.message).toContain("gamma");
  });
});

describe("the keys resize uses", () => {
  test("a host's disk report is its own; the measure request is global", () => {
    expect(parseKey(keys.disk("r1", "alpha"))).toEqual(
      { kind: "disk", owner: "alpha", resource: "r1" });
    expect(writerMayWrite(keys.disk("r1", "alpha"), "beta")).toBe(false);
    expect(parseKey(keys.measureDisks("r1"))).toEqual({ kind: "measure-disks", resource: "r1" });
    expect(writerMayWrite(keys.measureDisks("r1"), "beta")).toBe(true);
  });
});
