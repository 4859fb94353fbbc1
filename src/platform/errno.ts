/** Turns runtime and libc failures into MarsError values that name the operation and errno. */
import { MarsError, type ErrorCode } from "../lib/errors.ts";

const codeOfErrno: Record<string, ErrorCode> = {
  ENOSPC: "no-space",
  EDQUOT: "no-space",
  ENOENT: "not-found",
  ECONNREFUSED: "peer-unreachable",
  EHOSTUNREACH: "peer-unreachable",
  ETIMEDOUT: "peer-unreachable",
};

/** Errno name of a Node-style error (`code` field), or EIO when it has none. */
export function errnoOf(error: unknown): string {
  const code = (error as { code?: unknown } | undefined)?.code;
  // Node's own ERR_* codes are not errno names; only the E[A-Z]+ form is.
  return typeof code === "string" && /^E[A-Z0-9]+$/.test(code) ? code : "EIO";
}

export function errnoError(what: string, error: unknown): MarsError {
  if (error instanceof MarsError) return error;
  const errno = errnoOf(error);
  const reason = error instanceof Error ? error.message : String(error);
  return new MarsError(codeOfErrno[errno] ?? "io", `${what}: ${reason}`, {
    cause: error,
    details: { errno },
  });
}
