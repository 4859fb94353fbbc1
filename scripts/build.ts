/** `bun run build`: compiles src/main.ts into the one binary dist/mars, stamped with its commit. */
import { $ } from "bun";

const git = (command: string[]) => $`git ${command}`.nothrow().quiet().text();
const commit = (await git(["rev-parse", "--short=12", "HEAD"])).trim() || "unknown";
const dirty = (await git(["status", "--porcelain", "--untracked-files=no"])).trim();
const stamp = dirty ? `${commit}-dirty` : commit;

// Extra entry points (workers) are listed here so the compiled binary can start them.
const workerEntryPoints: string[] = [];

const started = performance.now();
await $`bun build --compile --minify --bytecode --format=esm \
  --define MARS_COMMIT=${JSON.stringify(stamp)} \
  src/main.ts ${workerEntryPoints} --outfile dist/mars`.quiet();
const seconds = ((performance.now() - started) / 1000).toFixed(1);
console.log(`built dist/mars (commit ${stamp}) in ${seconds} s`);
