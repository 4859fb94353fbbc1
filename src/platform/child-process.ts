/** Child processes and scratch directories, for commands that orchestrate other mars processes. */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** The most stderr text kept per child (the newest part), so a chatty engine cannot grow memory. */
export const childOutputBytesMax = 1024 * 1024;

export interface ChildProcess {
  readonly pid: number;
  /** Resolves with the exit code (128 + signal number when killed by a signal). */
  readonly exited: Promise<number>;
  /** The child's stderr so far (the newest `childOutputBytesMax` bytes). */
  stderrText(): string;
  signal(name: "SIGTERM" | "SIGKILL" | "SIGINT"): void;
  readonly running: boolean;
}

export interface ChildResult {
  readonly exitCode: number;
  readonly stdout: string;
  readonly stderr: string;
}

/** The command line that runs this same program: the compiled binary, or bun and the script. */
export function selfCommand(): string[] {
  const compiled = Bun.main.startsWith("/$bunfs/") || Bun.main.startsWith("B:/~BUN/");
  return compiled ? [process.execPath] : [process.execPath, Bun.main];
}

/** Starts a long-running child; stdout is discarded, stderr is kept for diagnosis. */
export function spawnChild(
  command: readonly string[], options: { env?: Record<string, string> } = {},
): ChildProcess {
  const child = Bun.spawn([...command], {
    stdin: "ignore", stdout: "ignore", stderr: "pipe",
    env: { ...process.env, ...options.env },
  });
  let output = "";
  const decoder = new TextDecoder();
  void (async () => {
    for await (const chunk of child.stderr) {
      output += decoder.decode(chunk, { stream: true });
      if (output.length > childOutputBytesMax) output = output.slice(-childOutputBytesMax);
    }
  })();
  return {
    pid: child.pid,
    exited: child.exited,
    stderrText: () => output,
    signal: (name) => child.kill(name),
    get running() {
      return child.exitCode === null && child.signalCode === null;
    },
  };
}

/** Runs a child to completion and collects its output. */
export async function runChild(
  command: readonly string[], options: { env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<ChildResult> {
  const child = Bun.spawn([...command], {
    stdin: "ignore", stdout: "pipe", stderr: "pipe",
    env: { ...process.env, ...options.env },
    timeout: options.timeoutMs ?? 120_000,
  });
  const [stdout, stderr, exitCode] = await Promise.all([
    new Response(child.stdout).text(), new Response(child.stderr).text(), child.exited,
  ]);
  return { exitCode, stdout, stderr };
}

/** A fresh private directory under the system's temporary directory. */
export function makeScratchDirectory(prefix: string): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

export function removeScratchDirectory(path: string): void {
  rmSync(path, { recursive: true, force: true });
}

/** A free loopback TCP port: bound, then released (another process may race for it). */
export function freeLoopbackPort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}
