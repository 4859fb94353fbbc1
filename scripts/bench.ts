/** `bun run bench NAME`: runs one benchmark from scripts/bench/ (each compares against a peer). */
import { readdirSync } from "node:fs";
import { join } from "node:path";

const folder = join(import.meta.dir, "bench");
const available = readdirSync(folder).filter((name) => name.endsWith(".ts"))
  .map((name) => name.slice(0, -3)).sort();
const [name, ...rest] = process.argv.slice(2);
if (!name || !available.includes(name)) {
  console.error(`usage: bun run bench NAME [ARGS]   (NAME: ${available.join(", ") || "none yet"})`);
  process.exit(2);
}
process.argv = [process.argv[0]!, join(folder, `${name}.ts`), ...rest];
await import(join(folder, `${name}.ts`));
