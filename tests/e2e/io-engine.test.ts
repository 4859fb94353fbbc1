/** The binary names its io engine and why, honours the override, falls back without io_uring. */
import { describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { UringEngine } from "../../src/platform/io/uring.ts";
import { binaryPath, runMars, temporaryDirectory } from "../support/binary.ts";

/** This machine's own answer; where io_uring is refused the binary must fall back instead. */
const probe = UringEngine.open();
const uringAvailable = probe instanceof UringEngine;
if (probe instanceof UringEngine) await probe.close();

describe("mars io engine choice", () => {
  test("automatic: io_uring where the kernel allows it, else the fallback", async () => {
    const result = await runMars(["--version", "--verbose"], { env: { MARS_IO_ENGINE: "" } });
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain(uringAvailable
      ? "io engine: uring: io_uring is available"
      : "io engine: portable: fell back: io_uring unavailable");
  });

  test("MARS_IO_ENGINE and --io-engine force the portable engine, and say so", async () => {
    const byEnvironment = await runMars(["--version", "--verbose"],
      { env: { MARS_IO_ENGINE: "portable" } });
    expect(byEnvironment.stdout).toContain("io engine: portable: requested by MARS_IO_ENGINE");
    const byOption = await runMars(["version", "--verbose", "--io-engine", "portable"],
      { env: { MARS_IO_ENGINE: "uring" } });
    expect(byOption.stdout).toContain("io engine: portable: requested by --io-engine");
  });

  test("an unknown engine name is a usage error", async () => {
    const result = await runMars(["version", "--io-engine", "aio"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("--io-engine takes uring or portable");
  });

  test("with io_uring disabled by sysctl the engine falls back and says why", async () => {
    // A private mount namespace shows this process alone a kernel.io_uring_disabled of 2.
    const directory = temporaryDirectory("mars-io-disabled-");
    const fake = join(directory, "io_uring_disabled");
    writeFileSync(fake, "2\n");
    const script = `mount --bind ${fake} /proc/sys/kernel/io_uring_disabled && ` +
      `exec ${binaryPath} --version --verbose`;
    const child = Bun.spawnSync(["unshare", "--mount", "--propagation", "private", "sh", "-c",
      script], { env: { ...process.env, MARS_IO_ENGINE: "" } });
    const stdout = child.stdout.toString();
    expect(child.exitCode).toBe(0);
    expect(stdout).toContain("io engine: portable: fell back: io_uring unavailable");
    expect(stdout).toContain("kernel.io_uring_disabled=2");
    const forced = Bun.spawnSync(["unshare", "--mount", "--propagation", "private", "sh", "-c",
      `${script} --io-engine uring`]);
    expect(forced.stdout.toString()).toContain("io engine: none: --io-engine uring: io_uring");
    rmSync(directory, { recursive: true, force: true });
  });
});
