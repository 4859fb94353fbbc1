/** The kernel nbd path for real: a QEMU guest with Debian's kernel runs the guest scenarios. */
import { describe, expect, test } from "bun:test";
import { resolve } from "node:path";
import { runTool } from "../support/nbd-serve.ts";

const root = resolve(import.meta.dir, "../..");
const hasQemu = Bun.which("qemu-system-x86_64") !== null;

describe("kernel nbd device in a guest", () => {
  test.skipIf(!hasQemu)("attach, ext4, kill -9 under a writer, re-attach, nothing synced lost; " +
    "a handover is refused while the old primary's /dev/nbdN is mounted or open",
    async () => {
      // One boot: the plain file device, then the translog (--log-dir), then two engines.
      // MARS_TEST_BINARY (a frozen copy) must lie outside /tmp: the guest has its own /tmp.
      const binary = process.env.MARS_TEST_BINARY;
      const shell = `${binary ? `MARS_BINARY=${binary} ` : ""}sh`;
      const scenario = `${shell} tests/support/vm/nbd-kernel-scenario.sh`;
      const roles = `${shell} tests/support/vm/roles-kernel-scenario.sh`;
      const started = performance.now();
      const result = await runTool([
        "tests/support/vm/run-in-guest.sh", "-t", "360",
        `${scenario} file && ${scenario} translog && ${roles}`,
      ], { cwd: root, timeoutMs: 400_000 });
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      console.error(`guest run: ${seconds} s wall, exit ${result.exitCode}`);
      if (result.exitCode !== 0) console.error(result.stdout, result.stderr);
      for (const variant of ["file", "translog"]) {
        expect(result.stdout).toContain(`STEP ${variant} restart`);
        expect(result.stdout).toContain(`STEP ${variant} stop`);
      }
      expect(result.stdout).toContain("re-attached");
      // The transcript: every step with its guest time; the roles scenario's refusals name the
      // device and what holds it.
      const transcript = result.stdout.split("\n")
        .filter((line) => line.startsWith("STEP ") || line.startsWith("  | ") ||
          line.includes("re-attached"));
      console.error(transcript.join("\n"));
      expect(result.stdout).toMatch(/open on alpha \(\/dev\/nbd\d+ mounted at \/mnt\/roles\)/);
      expect(result.stdout).toMatch(/open on beta \(\/dev\/nbd\d+ open by pid \d+ \(sleep\)\)/);
      expect(result.stdout).toMatch(/open on alpha \(\/dev\/nbd\d+ claimed by another holder/);
      expect(result.stdout).toContain("STEP roles stop");
      expect(result.stdout.split("SCENARIO PASSED").length).toBe(4);
      expect(result.exitCode).toBe(0);
    }, 420_000);
});
