/** The replicated key schema: which keys exist, who may write each, and valid names. */
import { MarsError } from "../lib/errors.ts";

/** Host and resource names: lower-case letter first, then letters, digits, '-' ('_' too). */
const namePattern = /^[a-z][a-z0-9_-]*$/;
export const nameLengthMax = 63;
/** Names that mean something else on the command line, as with marsadm. */
const reservedNames = new Set([
  "all", "any", "none", "full", "empty", "undefined", "remote", "local", "localhost",
]);

export function nameProblem(name: string): string | undefined {
  if (name.length === 0) return "is empty";
  if (name.length > nameLengthMax) return `is longer than ${nameLengthMax} characters`;
  if (!namePattern.test(name)) return "must match [a-z][a-z0-9_-]*";
  if (reservedNames.has(name)) return "is reserved";
  return undefined;
}

/** Throws a usage error naming the rule when `name` is not a valid host or resource name. */
export function checkName(kind: "host" | "resource", name: string): string {
  const problem = nameProblem(name);
  if (problem) throw new MarsError("usage", `${kind} name '${name}' ${problem}`);
  return name;
}

/** Switches a host's engine obeys for one resource (MARS's todo switches). */
export const switchNames = ["attach", "fetch", "replay", "sync"] as const;
export type SwitchName = (typeof switchNames)[number];

export const keys = {
  /** Global: a cluster member and the address its engine listens on. */
  member: (host: string) => `member/${host}`,
  /** Owned by the host: per writer, the Lamport time up to which it has every change. */
  caughtUp: (host: string) => `host/${host}/caught-up`,
  /** Global: the resource's size in bytes; its existence means the resource exists. */
  size: (resource: string) => `resource/${resource}/size`,
  /** Global: the designated primary host, or "" for none. */
  primary: (resource: string) => `resource/${resource}/primary`,
  /**
   * Global: a planned handover in progress ({from, to}); the old primary stops exporting
   * (once its device is closed) while it stays the designated source of its log.
   */
  handover: (resource: string) => `resource/${resource}/handover`,
  /** Owned by the host: its membership and backing disk. */
  resourceMember: (resource: string, host: string) => `resource/${resource}/member/${host}`,
  /** Global (any member may set it, `--global`): a desired switch of one host. */
  todo: (resource: string, host: string, name: SwitchName) =>
    `resource/${resource}/todo/${host}/${name}`,
  /** Global: free keys for operators and scripts (`mars set-key user/...`). */
  user: (path: string) => `user/${path}`,
  /** Owned by the host: what its engine is actually doing for the resource. */
  actual: (resource: string, host: string) => `resource/${resource}/actual/${host}`,
  /** Owned by the host: its replication state (positions, lags, rates; src/replication). */
  replication: (resource: string, host: string) => `resource/${resource}/replication/${host}`,
  /** Owned by the host: the split brain it found between its history and the primary's. */
  splitBrain: (resource: string, host: string) => `resource/${resource}/split-brain/${host}`,
  /** Owned by the host: as designated primary, what it wrote after a split point (roles). */
  splitWinner: (resource: string, host: string) => `resource/${resource}/split-winner/${host}`,
  /** Owned by the host: `mars invalidate` asked it to discard its replica (a request stamp). */
  invalidate: (resource: string, host: string) => `resource/${resource}/invalidate/${host}`,
  /**
   * Owned by the host: its backing disk's size as its engine last measured it, and (primary)
   * the size its export serves (`mars resize`).
   */
  disk: (resource: string, host: string) => `resource/${resource}/disk/${host}`,
  /** Global: a request (its id) that every member measure its disk now (`mars resize`). */
  measureDisks: (resource: string) => `resource/${resource}/measure-disks`,
} as const;

export const keyLengthMax = 256;

type KeyShape = { readonly kind: string; readonly owner?: string; readonly resource?: string };

/** Parses a key into its kind, owning host (undefined: global) and resource, or undefined. */
export function parseKey(key: string): KeyShape | undefined {
  if (key.length > keyLengthMax) return undefined;
  const parts = key.split("/");
  const valid = (name: string | undefined) => name !== undefined && !nameProblem(name);
  const [first, second, third, fourth, fifth] = parts;
  if (first === "user" && parts.length >= 2 && parts.slice(1).every(valid)) return { kind: "user" };
  if (first === "member" && parts.length === 2 && valid(second)) return { kind: "member" };
  if (first === "host" && parts.length === 3 && valid(second) && third === "caught-up") {
    return { kind: "caught-up", owner: second };
  }
  if (first !== "resource" || !valid(second)) return undefined;
  const resource = second!;
  const global = third === "size" || third === "primary" || third === "handover" ||
    third === "measure-disks";
  if (parts.length === 3 && global) return { kind: third!, resource };
  const owned = third === "member" || third === "actual" || third === "replication" ||
    third === "invalidate" || third === "split-brain" || third === "split-winner" ||
    third === "disk";
  if (parts.length === 4 && owned && valid(fourth)) {
    return { kind: third, owner: fourth, resource };
  }
  const isSwitch = (switchNames as readonly string[]).includes(fifth ?? "");
  if (parts.length === 5 && third === "todo" && valid(fourth) && isSwitch) {
    return { kind: "todo", resource };
  }
  return undefined;
}

/** Whether `writer` may have written `key`: owned keys only by their owner, global by anyone. */
export function writerMayWrite(key: string, writer: string): boolean {
  const shape = parseKey(key);
  if (!shape) return false;
  return shape.owner === undefined || shape.owner === writer;
}
