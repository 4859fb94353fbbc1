// mars resize on the kernel path: a QEMU guest's /dev/nbdN grows under a mounted ext4.
import { expect, test } from "bun:test";
import { resolve } from "node:path";
import { runTool } from "../support/nbd-serve.ts";

const root = resolve(import.meta.dir, "../..");
const hasQemu = Bun.which("qemu-system-x86_64") !== null;

test.skipIf(!hasQemu)("resize grows the kernel device at once; resize2fs and e2fsck after",
  async () => {
    // MARS_TEST_BINARY (a frozen copy) must lie outside /tmp: the guest has its own /tmp.
    const binary = process.env.MARS_TEST_BINARY;
    const shell = `${binary ? `MARS_BINARY=${binary} ` : ""}sh`;
    const result = await runTool([
      "tests/support/vm/run-in-guest.sh", "-t", "240",
      `${shell} tests/support/vm/resize-kernel-scenario.sh`,
    ], { cwd: root, timeoutMs: 280_000 });
    if (result.exitCode !== 0) console.error(result.stdout, result.stderr);
    expect(result.stdout).toContain(`alpha exports ${64 * 1024 * 1024} bytes`);
    expect(result.stdout).toContain(`kernel device: ${64 * 1024 * 1024} bytes`);
    expect(result.stdout).toContain("SCENARIO PASSED");
    expect(result.exitCode).toBe(0);
  }, 300_000);
