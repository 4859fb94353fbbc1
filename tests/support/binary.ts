/** Runs the compiled dist/mars the way a deploy script would, for end-to-end tests. */
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** dist/mars, or MARS_TEST_BINARY: a frozen copy, so a rebuild cannot swap it mid-run. */
export const binaryPath = process.env.MARS_TEST_BINARY ??
  resolve(import.meta.dir, "../../dist/mars");

export interface RunResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `mars ...args` to completion. The binary must have been built (`bun run build`). */
export async function runMars(
  args: readonly string[],
  options: { env?: Record<string, string>; timeoutMs?: number; stdin?: string } = {},
): Promise<RunResult> {
  if (!existsSync(binaryPath)) throw new Error(`${binaryPath} is missing: run 'bun run build'`);
  const child = Bun.spawn([binaryPath, ...args], {
    env: { ...process.env, ...options.env },
    stdin: options.stdin === undefined ? "ignore" : new TextEncoder().encode(options.stdin),
    stdout: "pipe",
    stderr: "pipe",
    timeout: options.timeoutMs ?? 60_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(),
    new Response(child.stderr).text(),
    child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

const madeDirectories: string[] = [];

/** A fresh temporary directory for one test; the preload removes it after the run. */
export function temporaryDirectory(prefix = "mars-test-"): string {
  const path = mkdtempSync(join(tmpdir(), prefix));
  madeDirectories.push(path);
  return path;
}

/** Removes every directory `temporaryDirectory` made (engines must be stopped first). */
export function removeTemporaryDirectories(): void {
  for (const path of madeDirectories.splice(0)) rmSync(path, { recursive: true, force: true });
}
