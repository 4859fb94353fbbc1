/** The user's choice of io engine (--io-engine, MARS_IO_ENGINE), parsed without loading FFI. */
import { MarsError } from "../../lib/errors.ts";

export type IoEngineName = "uring" | "portable";

/** An explicit choice and where it came from ("--io-engine", "MARS_IO_ENGINE"). */
export interface IoEngineRequest {
  readonly name: IoEngineName;
  readonly source: string;
}

/** Reads an engine name from an option or environment value; undefined when absent. */
export function parseIoEngineRequest(value: unknown, source: string): IoEngineRequest | undefined {
  if (value === undefined || value === "") return undefined;
  if (value === "uring" || value === "portable") return { name: value, source };
  throw new MarsError("usage", `${source} takes uring or portable, not '${String(value)}'`);
}
