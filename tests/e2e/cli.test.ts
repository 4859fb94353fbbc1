/** The command line as deploy scripts meet it: help, version, usage errors and their exit codes. */
import { describe, expect, test } from "bun:test";
import { runMars } from "../support/binary.ts";

describe("mars command line", () => {
  test("--help lists commands grouped by purpose and exits 0", async () => {
    const result = await runMars(["--help"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("Usage: mars COMMAND");
    expect(result.stdout).toContain("Engine and others:");
    expect(result.stdout).toContain("--home DIR");
  });

  test("--version names the commit the binary was built from", async () => {
    const result = await runMars(["--version"]);
    const git = Bun.spawnSync(["git", "rev-parse", "--short=12", "HEAD"]);
    const commit = git.stdout.toString().trim();
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toMatch(/^mars \d+\.\d+\.\d+ \(commit [0-9a-f]{12}(-dirty)?\)/);
    expect(result.stdout).toContain(commit);
  });

  test("--version --verbose names the io engine", async () => {
    const result = await runMars(["--version", "--verbose"]);
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("io engine:");
  });

  test("an unknown command exits 2 with a suggestion", async () => {
    const unknown = await runMars(["frobnicate"]);
    expect(unknown.exitCode).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
    const typo = await runMars(["versoin"]);
    expect(typo.exitCode).toBe(2);
    expect(typo.stderr).toContain("Did you mean 'version'?");
  });

  test("an unknown option exits 2 and names the closest one", async () => {
    const result = await runMars(["version", "--verbse"]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("unknown option '--verbse'");
    expect(result.stderr).toContain("--verbose");
  });

  test("a bad --timeout is a usage error", async () => {
    const result = await runMars(["version", "--timeout", "soon"]);
    expect(result.exitCode).toBe(2);
  });

  test("no arguments prints help on stderr and exits 2", async () => {
    const result = await runMars([]);
    expect(result.exitCode).toBe(2);
    expect(result.stderr).toContain("Usage: mars COMMAND");
  });
});
