/** Every command declared as data: name, group, one-line summary and how to load it. */
import type { CommandDef } from "citty";

export const commandGroups = [
  ["cluster", "Cluster"],
  ["resource", "Resources"],
  ["roles", "Roles"],
  ["data", "Data path"],
  ["inspection", "Inspection and waiting"],
  ["engine", "Engine and others"],
] as const;
export type CommandGroup = (typeof commandGroups)[number][0];

export interface CommandEntry {
  readonly name: string;
  readonly group: CommandGroup;
  readonly summary: string;
  /** Loaded only when the command runs, so `mars --help` stays fast. */
  readonly load: () => Promise<CommandDef<any>>;
}

// Keep one line per command; later capabilities add theirs here and nowhere else.
export const commands: readonly CommandEntry[] = [
  {
    name: "serve", group: "data",
    summary: "Export one disk over NBD: unix socket, TCP, kernel /dev/nbdN (standalone mode)",
    load: () => import("./commands/serve.ts").then((module) => module.default),
  },
  {
    name: "version", group: "engine", summary: "Print the version and commit (--verbose: platform)",
    load: () => import("./commands/version.ts").then((module) => module.default),
  },
];

export function findCommand(name: string): CommandEntry | undefined {
  return commands.find((entry) => entry.name === name);
}
