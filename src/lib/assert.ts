/** Always-on assertions: a broken invariant stops the process instead of corrupting data. */

/** Thrown only for bugs. Never caught by engine code; the CLI turns it into exit code 70. */
export class AssertionError extends Error {
  override readonly name = "AssertionError";
}

/** Stops with a message naming the invariant when `condition` is false. */
export function assert(condition: unknown, invariant = "assertion failed"): asserts condition {
  if (!condition) throw new AssertionError(invariant);
}

/** Marks a branch that a correct program can never reach (exhaustive switches). */
export function unreachable(value: never, what = "value"): never {
  throw new AssertionError(`unreachable: unexpected ${what} ${String(value)}`);
}

/** Asserts that `value` is a non-negative safe integer (offsets, lengths, counts). */
export function assertCount(value: number, name: string): void {
  assert(Number.isSafeInteger(value), `${name} is a safe integer (got ${value})`);
  assert(value >= 0, `${name} is not negative (got ${value})`);
}
