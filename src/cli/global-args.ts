/** The options every command accepts, with their environment fallbacks and defaults. */
import type { ArgsDef } from "citty";
import { MarsError } from "../lib/errors.ts";

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
} as const satisfies ArgsDef;

export interface GlobalOptions {
  readonly home: string;
  readonly json: boolean;
  readonly verbose: boolean;
  readonly timeoutSeconds: number;
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
  return { home, json: args.json === true, verbose: args.verbose === true, timeoutSeconds };
}
