/** Starts and stops real `mars run` engines for end-to-end tests: temp homes, free ports, logs. */
import type { Subprocess } from "bun";
import { join } from "node:path";
import { binaryPath, runMars, temporaryDirectory, type RunResult } from "./binary.ts";

/** A free loopback TCP port (bound and released; the tiny race is acceptable in tests). */
export function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

export interface EngineHandle {
  readonly name: string;
  readonly home: string;
  readonly port: number;
  /** Everything the engine wrote to stderr so far. */
  log(): string;
  /** Runs `mars ARGS --home HOME`. */
  mars(...args: string[]): Promise<RunResult>;
  start(extraArgs?: string[], env?: Record<string, string>): Promise<void>;
  /** SIGKILL: the process dies without any cleanup (a crash). */
  kill(): Promise<void>;
  /** SIGTERM and wait for the exit; returns the exit code. */
  stop(): Promise<number>;
  readonly running: boolean;
}

/** Every engine started through this module, so a test's afterAll can stop them all. */
const started = new Set<Subprocess>();

export function engineHandle(name: string, root = temporaryDirectory("mars-e2e-")): EngineHandle {
  const home = join(root, name);
  const port = freePort();
  let child: Subprocess<"ignore", "ignore", "pipe"> | undefined;
  let output = "";
  const handle: EngineHandle = {
    name, home, port,
    log: () => output,
    mars: (...args) => runMars([...args, "--home", home]),
    get running() {
      return child !== undefined && child.exitCode === null;
    },
    async start(extraArgs = [], env = {}) {
      output = "";
      child = Bun.spawn([binaryPath, "run", "--home", home, ...extraArgs], {
        stdin: "ignore", stdout: "ignore", stderr: "pipe", env: { ...process.env, ...env },
      });
      started.add(child);
      const reader = child.stderr.getReader();
      void (async () => {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) return;
          output += new TextDecoder().decode(value);
        }
      })();
      const deadline = Date.now() + 10_000;
      while (!output.includes("engine-started")) {
        if (child.exitCode !== null) throw new Error(`engine ${name} exited: ${output}`);
        if (Date.now() > deadline) throw new Error(`engine ${name} did not start: ${output}`);
        await Bun.sleep(20);
      }
    },
    async kill() {
      if (!child) return;
      child.kill("SIGKILL");
      await child.exited;
      started.delete(child);
    },
    async stop() {
      if (!child) return -1;
      child.kill("SIGTERM");
      const code = await child.exited;
      started.delete(child);
      return code;
    },
  };
  return handle;
}

/** Kills every engine still running (afterAll). */
export async function stopAllEngines(): Promise<void> {
  for (const child of started) {
    child.kill("SIGKILL");
    await child.exited;
  }
  started.clear();
}

/**
 * Polls `check` every 25 ms until it returns true or `timeoutMs` passes; returns elapsed ms.
 * A check that throws counts as "not yet" (an engine may be between states); the timeout's
 * error names the last such error and, when given, what `describe` says of the state then.
 */
export async function eventually(
  check: () => Promise<boolean>, timeoutMs: number, describe?: () => Promise<string>,
): Promise<number> {
  const begin = performance.now();
  let lastError: unknown;
  for (;;) {
    try {
      if (await check()) return performance.now() - begin;
      lastError = undefined;
    } catch (error) {
      lastError = error;
    }
    if (performance.now() - begin > timeoutMs) {
      const state = describe ? await describe().catch((error) => `(${error})`) : "";
      const cause = lastError === undefined ? "" : `; last check threw: ${lastError}`;
      throw new Error(`not within ${timeoutMs} ms${cause}${state ? `\n${state}` : ""}`);
    }
    await Bun.sleep(25);
  }
}
