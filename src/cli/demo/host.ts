/** One demo host: a home, a port, a sparse disk, and its engine run as a child of this process. */
import { MarsError } from "../../lib/errors.ts";
import {
  runChild, selfCommand, spawnChild, type ChildProcess, type ChildResult,
} from "../../platform/child-process.ts";

/** How long an engine may take to say it started. */
export const engineStartTimeoutMs = 15_000;
/** How long a graceful stop may take before the demo kills the engine. */
export const engineStopTimeoutMs = 15_000;

export class DemoHost {
  readonly home: string;
  readonly disk: string;
  private engine: ChildProcess | undefined;

  constructor(
    readonly name: string,
    readonly port: number,
    root: string,
  ) {
    this.home = `${root}/${name}`;
    this.disk = `${root}/${name}.img`;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Runs `mars ARGS --home HOME`; a non-zero exit is an error naming the command. */
  async mars(...args: string[]): Promise<ChildResult> {
    const result = await this.marsAllowingFailure(...args);
    if (result.exitCode !== 0) {
      const output = `${result.stderr}${result.stdout}`.trim();
      throw new MarsError("engine", `${this.name}: mars ${args.join(" ")} exited ` +
        `${result.exitCode}: ${output}`);
    }
    return result;
  }

  marsAllowingFailure(...args: string[]): Promise<ChildResult> {
    return runChild([...selfCommand(), ...args, "--home", this.home]);
  }

  /** Parsed `view --json` of this host. */
  async view(): Promise<ViewJson> {
    return JSON.parse((await this.mars("view", "--json")).stdout) as ViewJson;
  }

  async start(sleep: (milliseconds: number) => Promise<void>): Promise<void> {
    const engine = spawnChild([...selfCommand(), "run", "--home", this.home]);
    this.engine = engine;
    for (let waitedMs = 0; !engine.stderrText().includes("engine-started"); waitedMs += 20) {
      if (!engine.running || waitedMs > engineStartTimeoutMs) {
        throw new MarsError("engine", `${this.name}: engine did not start: ${engine.stderrText()}`);
      }
      await sleep(20);
    }
  }

  /** SIGKILL: the engine dies without any cleanup, as in a crash. */
  async kill(): Promise<void> {
    if (!this.engine?.running) return;
    this.engine.signal("SIGKILL");
    await this.engine.exited;
  }

  /** SIGTERM, then SIGKILL if the engine does not stop in time; returns the exit code. */
  async stop(): Promise<number | undefined> {
    const engine = this.engine;
    if (!engine?.running) return undefined;
    engine.signal("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<undefined>((resolve) => {
      timer = setTimeout(() => resolve(undefined), engineStopTimeoutMs);
    });
    const code = await Promise.race([engine.exited, timeout]);
    clearTimeout(timer);
    if (code === undefined) await this.kill();
    return code;
  }

  /** What the current engine wrote to stderr (its log). */
  log(): string {
    return this.engine?.stderrText() ?? "";
  }

  get running(): boolean {
    return this.engine?.running ?? false;
  }
}

/** The part of `view --json` the demo reads (docs/cli.md documents all of it). */
export interface ViewJson {
  readonly resources: ReadonlyArray<{
    readonly resource: string;
    readonly role: string;
    readonly primary: string | null;
    readonly members?: readonly string[];
    readonly export: string | null;
    readonly replication: ReplicationJson | null;
    readonly replicas: Readonly<Record<string, ReplicationJson>>;
  }>;
}

export interface ReplicationJson {
  readonly status: string;
  readonly logEnd?: { readonly sequence: number; readonly offsetBytes: number } | null;
  readonly consistent: boolean;
  readonly fetchLagBytes: number | null;
  readonly replayLagBytes: number | null;
  readonly syncPercent: number | null;
}
