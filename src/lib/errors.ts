/** The one typed error for expected failures, and the exit-code table every command shares. */

/** Process exit codes; docs/exit-codes.md explains each one to script authors. */
export const ExitCode = {
  ok: 0,
  operational: 1,
  usage: 2,
  timeout: 3,
  refused: 4,
  splitBrain: 5,
  emergency: 6,
  defectiveLog: 7,
  unknown: 8,
  denied: 9,
  internal: 70,
} as const;
export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** Every expected failure has a stable code; scripts may match on it in `--json` output. */
const exitCodeOf = {
  "usage": ExitCode.usage,
  "io": ExitCode.operational,
  "no-space": ExitCode.operational,
  "not-found": ExitCode.operational,
  "peer-unreachable": ExitCode.operational,
  "authentication": ExitCode.operational,
  "engine": ExitCode.operational,
  "protocol": ExitCode.operational,
  "timeout": ExitCode.timeout,
  "refused": ExitCode.refused,
  "split-brain": ExitCode.splitBrain,
  "emergency": ExitCode.emergency,
  "defective-log": ExitCode.defectiveLog,
  "not-initialised": ExitCode.unknown,
  "unknown-resource": ExitCode.unknown,
  "unknown-host": ExitCode.unknown,
  "wrong-secret": ExitCode.denied,
  "cluster-mismatch": ExitCode.denied,
  "disk-too-small": ExitCode.refused,
  "disk-in-use": ExitCode.refused,
  "home-locked": ExitCode.refused,
} as const satisfies Record<string, ExitCode>;
export type ErrorCode = keyof typeof exitCodeOf;

/** An operating error: a peer gone, a full disk, bad input. Reported, never a crash. */
export class MarsError extends Error {
  override readonly name = "MarsError";
  readonly code: ErrorCode;
  readonly exitCode: ExitCode;
  /** Extra facts for `--json` output and logs (file, offset, errno, ...). */
  readonly details: Readonly<Record<string, unknown>>;

  constructor(
    code: ErrorCode,
    message: string,
    options: { cause?: unknown; details?: Record<string, unknown> } = {},
  ) {
    super(message, { cause: options.cause });
    this.code = code;
    this.exitCode = exitCodeOf[code];
    this.details = options.details ?? {};
  }
}

export function isMarsError(error: unknown): error is MarsError {
  return error instanceof MarsError;
}
