/** The top-level help: every command grouped by purpose, built from the registry alone. */
import { commandGroups, commands } from "./registry.ts";
import { globalArgs } from "./global-args.ts";

export function topLevelHelp(version: string): string {
  const lines = [
    `mars ${version}: long-distance asynchronous replication of block devices`,
    "",
    "Usage: mars COMMAND [ARGS] [OPTIONS]     mars COMMAND --help for its options",
  ];
  const width = Math.max(...commands.map((entry) => entry.name.length)) + 2;
  for (const [group, title] of commandGroups) {
    const members = commands.filter((entry) => entry.group === group);
    if (members.length === 0) continue;
    lines.push("", `${title}:`);
    for (const entry of members) lines.push(`  ${entry.name.padEnd(width)}${entry.summary}`);
  }
  lines.push("", "Global options:");
  const options: Array<[string, string]> = Object.entries(globalArgs).map(([name, definition]) => {
    const hint = "valueHint" in definition ? ` ${definition.valueHint}` : "";
    return [`--${name}${hint}`, definition.description];
  });
  options.push(["--version", "Print the version and commit"]);
  const optionWidth = Math.max(...options.map(([flag]) => flag.length)) + 2;
  for (const [flag, description] of options) {
    lines.push(`  ${flag.padEnd(optionWidth)}${description}`);
  }
  lines.push("", "Exit codes: 0 ok, 1 operational error, 2 usage, 3 timeout, 4 refused,");
  lines.push("            5 split brain, 6 emergency mode, 7 defective log, 8 unknown resource");
  lines.push("            or host, 9 authentication refused (docs/exit-codes.md)");
  return lines.join("\n");
}
