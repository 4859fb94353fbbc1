/** Starts `mars serve` from the compiled binary, waits until it is ready, stops it by signal. */
import type { Subprocess } from "bun";
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { binaryPath, temporaryDirectory } from "./binary.ts";

export interface RunningServer {
  readonly directory: string;
  readonly socketPath: string;
  /** nbd+unix URI understood by libnbd tools, qemu and fio. */
  readonly uri: string;
  /** Everything the server printed on stdout so far. */
  output(): string;
  errors(): string;
  readonly process: Subprocess;
  /** SIGTERM, then the exit code (SIGKILL after `graceMs`). */
  stop(graceMs?: number): Promise<number>;
  /** Removes the temporary directory (after stop). */
  cleanup(): void;
}

/** Debian's python has the libnbd module; a pyenv python3 earlier in PATH does not. */
export const systemPathFirst = `/usr/bin:/usr/sbin:/sbin:${process.env.PATH ?? ""}`;

export async function startServer(
  extraArgs: readonly string[],
  options: {
    disk?: string; diskInDirectory?: boolean; logInDirectory?: boolean; readyMs?: number;
  } = {},
): Promise<RunningServer> {
  if (!existsSync(binaryPath)) throw new Error(`${binaryPath} is missing: run 'bun run build'`);
  const directory = temporaryDirectory("mars-nbd-");
  const socketPath = join(directory, "nbd.sock");
  // "LOG" stands for a log directory inside the test's temporary directory.
  const logPath = join(directory, "log");
  const given = extraArgs.map((arg) => (options.logInDirectory && arg === "LOG" ? logPath : arg));
  const args = [binaryPath, "serve", "--unix", socketPath, ...given];
  const disk = options.diskInDirectory ? join(directory, "disk.img") : options.disk;
  if (disk !== undefined) args.push("--disk", disk);
  const child = Bun.spawn(args, { stdout: "pipe", stderr: "pipe", stdin: "ignore" });
  let stdout = "";
  let stderr = "";
  const collect = async (stream: ReadableStream<Uint8Array>, sink: (text: string) => void) => {
    const decoder = new TextDecoder();
    for await (const chunk of stream) sink(decoder.decode(chunk, { stream: true }));
  };
  void collect(child.stdout, (text) => (stdout += text));
  void collect(child.stderr, (text) => (stderr += text));
  const deadline = Date.now() + (options.readyMs ?? 15_000);
  while (!stdout.includes("ready:")) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill("SIGKILL");
      throw new Error(`mars serve did not start (exit ${child.exitCode}): ${stdout}${stderr}`);
    }
    await Bun.sleep(20);
  }
  return {
    directory,
    socketPath,
    uri: `nbd+unix:///?socket=${socketPath}`,
    output: () => stdout,
    errors: () => stderr,
    process: child,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null) return child.exitCode;
      child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
      const code = await child.exited;
      clearTimeout(timer);
      return code;
    },
    cleanup() {
      if (child.exitCode === null) child.kill("SIGKILL");
      rmSync(directory, { recursive: true, force: true });
    },
  };
}

/** Runs a tool to completion with a bound on its time; returns exit code and output. */
export async function runTool(
  command: readonly string[],
  options: { timeoutMs?: number; env?: Record<string, string>; cwd?: string } = {},
): Promise<{ exitCode: number; stdout: string; stderr: string }> {
  const child = Bun.spawn([...command], {
    stdout: "pipe", stderr: "pipe", stdin: "ignore",
    env: { ...process.env, PATH: systemPathFirst, ...options.env },
    cwd: options.cwd,
    timeout: options.timeoutMs ?? 60_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** sha256 of a file, through the system tool (keeps big files out of the test's heap). */
export async function sha256OfFile(path: string): Promise<string> {
  const result = await runTool(["sha256sum", path]);
  if (result.exitCode !== 0) throw new Error(`sha256sum ${path}: ${result.stderr}`);
  return result.stdout.split(" ")[0]!;
}
