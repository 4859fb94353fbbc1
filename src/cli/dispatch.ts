/** Finds a command line's command, checks its options strictly, runs it, maps errors to exits. */
import { renderUsage, runCommand, type ArgsDef, type CommandDef } from "citty";
import { AssertionError } from "../lib/assert.ts";
import { ExitCode, MarsError } from "../lib/errors.ts";
import { closest } from "../lib/suggest.ts";
import { marsVersion } from "./build-info.ts";
import { globalArgs } from "./global-args.ts";
import { topLevelHelp } from "./help.ts";
import { commands, findCommand } from "./registry.ts";

export interface Terminal {
  readonly stdout: (text: string) => void;
  readonly stderr: (text: string) => void;
}

/** Runs one command line; returns the process exit code (never calls process.exit itself). */
export async function dispatch(argv: readonly string[], terminal: Terminal): Promise<number> {
  try {
    return await dispatchOrThrow(argv, terminal);
  } catch (error) {
    return reportFailure(error, terminal);
  }
}

async function dispatchOrThrow(argv: readonly string[], terminal: Terminal): Promise<number> {
  const [first, ...rest] = argv;
  if (first === undefined) {
    terminal.stderr(topLevelHelp(marsVersion));
    return ExitCode.usage;
  }
  if (first === "--help" || first === "-h" || first === "help") {
    terminal.stdout(topLevelHelp(marsVersion));
    return ExitCode.ok;
  }
  const name = first === "--version" || first === "-V" ? "version" : first;
  const entry = findCommand(name);
  if (!entry) throw unknownCommand(name);
  const { command, path, leafArgs } = await resolveLeaf(await entry.load(), rest);
  if (leafArgs.includes("--help") || leafArgs.includes("-h")) {
    terminal.stdout(await renderUsage(withGlobals(command), undefined));
    return ExitCode.ok;
  }
  await checkOptions(command, leafArgs, `mars ${[name, ...path].join(" ")}`);
  await runCommand(withGlobals(command), { rawArgs: [...leafArgs] });
  return ExitCode.ok;
}

function unknownCommand(name: string): MarsError {
  const kind = name.startsWith("-") ? "option" : "command";
  const names = commands.map((entry) => entry.name);
  const suggestion = closest(name.replace(/^-+/, ""), names);
  const hint = suggestion ? ` Did you mean '${suggestion}'?` : "";
  return new MarsError("usage", `unknown ${kind} '${name}'.${hint} See 'mars --help'.`);
}

/** Walks nested sub-commands (`log dump …`) down to the command that runs. */
async function resolveLeaf(command: CommandDef<any>, rawArgs: readonly string[]) {
  const path: string[] = [];
  let current = command;
  let remaining = rawArgs;
  for (;;) {
    const subCommands = await resolve(current.subCommands);
    if (!subCommands || Object.keys(subCommands).length === 0) break;
    const [next, ...after] = remaining;
    if (next === undefined || next.startsWith("-")) {
      const helpAsked = next === "--help" || next === "-h";
      if (helpAsked) return { command: current, path, leafArgs: remaining };
      throw new MarsError("usage", `missing sub-command: one of ${Object.keys(subCommands)}`);
    }
    const sub = subCommands[next];
    if (!sub) {
      const suggestion = closest(next, Object.keys(subCommands));
      const hint = suggestion ? ` Did you mean '${suggestion}'?` : "";
      throw new MarsError("usage", `unknown sub-command '${next}'.${hint}`);
    }
    current = (await resolve(sub)) as CommandDef<any>;
    path.push(next);
    remaining = after;
  }
  return { command: current, path, leafArgs: remaining };
}

async function resolve<T>(value: T | Promise<T> | (() => T | Promise<T>) | undefined) {
  return typeof value === "function" ? await (value as () => T | Promise<T>)() : await value;
}

function withGlobals(command: CommandDef<any>): CommandDef<any> {
  return {
    ...command,
    args: async () => ({ ...(await resolve(command.args)), ...globalArgs }),
  };
}

/** Rejects unknown options and surplus positional arguments, suggesting the closest option. */
async function checkOptions(command: CommandDef<any>, rawArgs: readonly string[], usage: string) {
  const definitions: ArgsDef = { ...((await resolve(command.args)) ?? {}), ...globalArgs };
  const known = new Map<string, boolean>(); // option name → takes a value
  let positionalCount = 0;
  for (const [name, definition] of Object.entries(definitions)) {
    if (definition.type === "positional") {
      // `variadic: true` (a mars extension citty ignores) takes every remaining argument.
      const variadic = (definition as { variadic?: boolean }).variadic === true;
      positionalCount += variadic ? Number.POSITIVE_INFINITY : 1;
      continue;
    }
    const takesValue = definition.type !== "boolean";
    const aliases = "alias" in definition && definition.alias ? [definition.alias].flat() : [];
    for (const option of [name, ...aliases]) known.set(option, takesValue);
    if (!takesValue) known.set(`no-${name}`, false);
  }
  let positionals = 0;
  for (let index = 0; index < rawArgs.length; index++) {
    const token = rawArgs[index]!;
    if (token === "--") {
      positionals += rawArgs.length - index - 1;
      break;
    }
    if (!token.startsWith("-") || token === "-") {
      positionals++;
      continue;
    }
    const [name, inlineValue] = token.replace(/^-+/, "").split("=", 2) as [string, string?];
    const takesValue = known.get(name);
    if (takesValue === undefined) {
      const suggestion = closest(name, [...known.keys()]);
      const hint = suggestion ? ` Did you mean '--${suggestion}'?` : "";
      throw new MarsError("usage", `unknown option '${token}'.${hint} See '${usage} --help'.`);
    }
    if (takesValue && inlineValue === undefined) index++;
  }
  if (positionals > positionalCount) {
    throw new MarsError("usage", `too many arguments. See '${usage} --help'.`);
  }
}

function reportFailure(error: unknown, terminal: Terminal): number {
  if (error instanceof MarsError) {
    terminal.stderr(`mars: ${error.message}`);
    return error.exitCode;
  }
  if (error instanceof AssertionError) {
    terminal.stderr(`mars: internal invariant broken: ${error.message}`);
    if (error.stack) terminal.stderr(error.stack);
    return ExitCode.internal;
  }
  const code = (error as { code?: unknown } | undefined)?.code;
  if (typeof code === "string" && (code === "EARG" || code.startsWith("E_"))) {
    // citty's own argument errors (missing positional, bad enum value).
    terminal.stderr(`mars: ${(error as Error).message}`);
    return ExitCode.usage;
  }
  terminal.stderr(`mars: unexpected error: ${error instanceof Error ? error.stack : error}`);
  return ExitCode.operational;
}
