/** The kernel nbd path for real: a QEMU guest with Debian's kernel runs the netlink scenario. */
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { runTool } from "../support/nbd-serve.ts";

const root = resolve(import.meta.dir, "../..");
const hasQemu = Bun.which("qemu-system-x86_64") !== null;

describe("kernel nbd device in a guest", () => {
  test.skipIf(!hasQemu)("attach, ext4, kill -9 under a writer, re-attach, nothing synced lost",
    async () => {
      // One boot, two data paths: the plain file device, then the translog (--log-dir).
      const scenario = "sh tests/support/vm/nbd-kernel-scenario.sh";
      const started = performance.now();
      const result = await runTool([
        "tests/support/vm/run-in-guest.sh", "-t", "240",
        `${scenario} file && ${scenario} translog`,
      ], { cwd: root, timeoutMs: 280_000 });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.error(`guest run: ${seconds} s wall, exit ${result.exitCode}`);
      if (result.exitCode !== 0) console.error(result.stdout, result.stderr);
      for (const variant of ["file", "translog"]) {
        expect(result.stdout).toContain(`STEP ${variant} restart`);
        expect(result.stdout).toContain(`STEP ${variant} stop`);
      }
      expect(result.stdout).toContain("re-attached");
      expect(result.stdout.split("SCENARIO PASSED").length).toBe(3);
      expect(result.exitCode).toBe(0);
    }, 300_000);
});
