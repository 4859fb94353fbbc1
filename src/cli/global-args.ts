/** The options every command accepts, with their environment fallbacks and defaults. */
import type { ArgsDef } from "citty";
import { MarsError } from "../lib/errors.ts";
import { parseIoEngineRequest, type IoEngineRequest } from "../platform/io/request.ts";

export const defaultHome = "/var/lib/mars";
export const defaultTimeoutSeconds = 600;

export const globalArgs = {
  home: {
    type: "string", valueHint: "DIR",
    description: `The store directory (env MARS_HOME; default ${defaultHome})`,
  },
  json: { type: "boolean", description: "Machine-readable output (read commands)" },
  verbose: { type: "boolean", description: "More detail on stderr" },
  timeout: {
    type: "string", valueHint: "SECONDS",
    description: `Bound for commands that wait (default ${defaultTimeoutSeconds}; 0 = no wait)`,
  },
  "io-engine": {
    type: "string", valueHint: "uring|portable",
    description: "Disk I/O engine (env MARS_IO_ENGINE; default io_uring if the kernel allows)",
  },
} as const satisfies ArgsDef;

export interface GlobalOptions {
  readonly home: string;
  readonly json: boolean;
  readonly verbose: boolean;
  readonly timeoutSeconds: number;
  /** An explicit io engine choice; undefined = automatic (see src/platform/io/index.ts). */
  readonly ioEngine: IoEngineRequest | undefined;
}

/** Resolves the global options of a parsed command line. */
export function globalOptions(
  args: Record<string, unknown>,
  environment: Record<string, string | undefined>,
): GlobalOptions {
  const home = typeof args.home === "string" ? args.home : environment.MARS_HOME ?? defaultHome;
  const timeoutText = typeof args.timeout === "string" ? args.timeout : undefined;
  const timeoutSeconds = timeoutText === undefined ? defaultTimeoutSeconds : Number(timeoutText);
  if (!Number.isFinite(timeoutSeconds) || timeoutSeconds < 0) {
    throw new MarsError("usage", `--timeout takes a number of seconds, not '${timeoutText}'`);
  }
  const ioEngine = parseIoEngineRequest(args["io-engine"], "--io-engine") ??
    parseIoEngineRequest(environment.MARS_IO_ENGINE, "MARS_IO_ENGINE");
  return {
    home, json: args.json === true, verbose: args.verbose === true, timeoutSeconds, ioEngine,
  };
}
