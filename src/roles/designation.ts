/** Who should export a resource: the designated primary, unless a handover is moving it away. */
import { assert } from "../lib/assert.ts";

/** Value of key resource/R/handover while a planned handover runs (docs/roles.md). */
export interface Handover {
  /** The designated primary that is to stop exporting and close its log. */
  readonly from: string;
  /** The host that takes over once it has fetched and replayed all of that log. */
  readonly to: string;
  /** Wall-clock time the handover began (for people and for stale-handover checks). */
  readonly startedMs: number;
}

/** Reads a published handover defensively (foreign or older values are ignored). */
export function asHandover(value: unknown): Handover | undefined {
  if (typeof value !== "object" || value === null) return undefined;
  const record = value as Partial<Handover>;
  if (typeof record.from !== "string" || typeof record.to !== "string") return undefined;
  return value as Handover;
}

/**
 * Whether `host` should export the resource now: it is the designated primary and no handover
 * is taking the role from it. During a handover the old primary stays designated (so every
 * replica keeps fetching its log from it) but stops exporting and closes its last logfile.
 */
export function primaryWanted(primary: unknown, handover: unknown, host: string): boolean {
  assert(host.length > 0, "a host has a name");
  if (primary !== host) return false;
  const moving = asHandover(handover);
  return !(moving && moving.from === host && moving.to !== host);
}
