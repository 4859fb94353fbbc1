/** The few rules of the code base that matter, enforced: a planted violation turns this red. */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const root = resolve(import.meta.dir, "..");
const lineColumnsMax = 100;
const sourceLinesMax = 500;
const testLinesMax = 800;

/** Folders whose code must reach time, randomness, disk and network only through interfaces. */
const deterministicFolders = [
  "src/block", "src/log", "src/translog", "src/nbd", "src/engine", "src/cluster",
  "src/replication", "src/store", "src/transport", "src/lib", "src/sync", "src/retention",
  "src/roles",
];
/** Platform modules that are pure functions of their input, so deterministic code may use them. */
const deterministicPlatformModules = [
  "src/platform/types.ts", "src/platform/hash.ts", "src/platform/compress.ts",
  "src/platform/cbor.ts",
];

function listTypeScript(folder: string): string[] {
  const found: string[] = [];
  const walk = (directory: string) => {
    for (const name of readdirSync(directory)) {
      const path = join(directory, name);
      if (statSync(path).isDirectory()) walk(path);
      else if (name.endsWith(".ts")) found.push(relative(root, path));
    }
  };
  walk(join(root, folder));
  return found.sort();
}

const sources = listTypeScript("src");
const everything = [...sources, ...listTypeScript("tests"), ...listTypeScript("scripts")];
const text = new Map(everything.map((file) => [file, readFileSync(join(root, file), "utf8")]));

function importsOf(file: string): string[] {
  const patterns = [
    /(?:^|\n)\s*(?:import|export)[^"'`;]*?from\s*["']([^"']+)["']/g,
    /import\(\s*["']([^"']+)["']\s*\)/g,
    /(?:^|\n)\s*import\s*["']([^"']+)["']/g,
  ];
  const found: string[] = [];
  for (const pattern of patterns) {
    for (const match of text.get(file)!.matchAll(pattern)) found.push(match[1]!);
  }
  return found;
}

function resolveRelative(file: string, specifier: string): string | undefined {
  if (!specifier.startsWith(".")) return undefined;
  return relative(root, resolve(root, dirname(file), specifier));
}

describe("tidy", () => {
  test("platform imports (bun:ffi, node:*, bun, Bun.*) only in src/platform", () => {
    const offenders: string[] = [];
    for (const file of sources) {
      if (file.startsWith("src/platform/")) continue;
      for (const specifier of importsOf(file)) {
        if (/^(bun:|node:|bun$)/.test(specifier)) offenders.push(`${file} imports ${specifier}`);
      }
      const code = stripComments(text.get(file)!);
      if (/\bBun\./.test(code)) offenders.push(`${file} uses Bun.*`);
      if (/\brequire\(/.test(code)) offenders.push(`${file} uses require()`);
    }
    expect(offenders).toEqual([]);
  });

  test("deterministic folders take time, randomness and I/O only through interfaces", () => {
    const offenders: string[] = [];
    const ambient = /\b(Date\.now|Math\.random|setTimeout|setInterval|performance\.now|process\.)/;
    for (const file of sources) {
      if (!deterministicFolders.some((folder) => file.startsWith(`${folder}/`))) continue;
      const code = stripComments(text.get(file)!);
      const match = ambient.exec(code);
      if (match) offenders.push(`${file} uses ${match[1]}`);
      for (const specifier of importsOf(file)) {
        const target = resolveRelative(file, specifier);
        if (target?.startsWith("src/platform/") && !deterministicPlatformModules.includes(target)) {
          offenders.push(`${file} imports ${target}`);
        }
        if (target?.startsWith("src/cli/")) offenders.push(`${file} imports the CLI (${target})`);
      }
    }
    expect(offenders).toEqual([]);
  });

  test("no import cycles in src", () => {
    const graph = new Map(sources.map((file) => [file, importsOf(file)
      .map((specifier) => resolveRelative(file, specifier))
      .filter((target): target is string => target !== undefined && text.has(target))]));
    const cycles: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const stack: string[] = [];
    const visit = (file: string) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") {
        cycles.push([...stack.slice(stack.indexOf(file)), file].join(" → "));
        return;
      }
      state.set(file, "visiting");
      stack.push(file);
      for (const target of graph.get(file) ?? []) visit(target);
      stack.pop();
      state.set(file, "done");
    };
    for (const file of sources) visit(file);
    expect(cycles).toEqual([]);
  });

  test(`lines are at most ${lineColumnsMax} columns`, () => {
    const offenders: string[] = [];
    for (const [file, content] of text) {
      content.split("\n").forEach((line, index) => {
        if ([...line].length > lineColumnsMax) offenders.push(`${file}:${index + 1}`);
      });
    }
    expect(offenders).toEqual([]);
  });

  test(`source files stay under ${sourceLinesMax} lines (tests ${testLinesMax})`, () => {
    const offenders: string[] = [];
    for (const [file, content] of text) {
      const limit = file.startsWith("tests/") ? testLinesMax : sourceLinesMax;
      const lines = content.split("\n").length;
      if (lines > limit) offenders.push(`${file} has ${lines} lines`);
    }
    expect(offenders).toEqual([]);
  });

  test("the project type-checks (tsc, strict)", () => {
    const tsc = join(root, "node_modules/.bin/tsc");
    const result = Bun.spawnSync([tsc, "--noEmit", "-p", root], { stdout: "pipe", stderr: "pipe" });
    expect(result.stdout.toString() + result.stderr.toString()).toBe("");
    expect(result.exitCode).toBe(0);
  }, 60_000);

  test("every file opens with one line saying why it exists", () => {
    const offenders = everything.filter((file) => {
      const first = text.get(file)!.split("\n")[0] ?? "";
      return !/^(\/\*\*|\/\/) \S/.test(first);
    });
    expect(offenders).toEqual([]);
  });
});

function stripComments(code: string): string {
  return code.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`])\/\/.*$/gm, "$1");
}
