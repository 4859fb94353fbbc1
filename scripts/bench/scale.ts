/** `bun run bench scale`: 1000 resources on one engine plus a peer: start-up, idle, propagation. */
import { mkdtempSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

const binary = process.env.MARS_BENCH_BINARY ?? resolve(import.meta.dir, "../../dist/mars");
const resourceCount = Number(process.argv[2] ?? 1000);
const idleSeconds = Number(process.argv[3] ?? 60);
const root = mkdtempSync(join(tmpdir(), "mars-bench-scale-"));
const goals = { rssBytes: 300 * 1024 * 1024, idleCpuPercent: 3, propagationMs: 1000 };

function freePort(): number {
  const server = Bun.listen({ hostname: "127.0.0.1", port: 0, socket: { data() {} } });
  const port = server.port;
  server.stop(true);
  return port;
}

function mars(home: string, ...args: string[]): string {
  const result = Bun.spawnSync([binary, ...args, "--home", home],
    { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) {
    throw new Error(`mars ${args.join(" ")}: ${result.stderr.toString()}`);
  }
  return result.stdout.toString();
}

async function startEngine(home: string) {
  const begin = performance.now();
  const child = Bun.spawn([binary, "run", "--home", home], { stdout: "ignore", stderr: "pipe" });
  let log = "";
  const reader = child.stderr.getReader();
  while (!log.includes("engine-started")) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`engine exited: ${log}`);
    log += new TextDecoder().decode(value);
  }
  void (async () => { while (!(await reader.read()).done); })();
  return { child, startupMs: performance.now() - begin };
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ");
  return Number(fields[11]) + Number(fields[12]);
}

function rssBytes(pid: number): number {
  const line = readFileSync(`/proc/${pid}/status`, "utf8").split("\n")
    .find((text) => text.startsWith("VmRSS:"))!;
  return Number(line.split(/\s+/)[1]) * 1024;
}

const alpha = join(root, "alpha");
const beta = join(root, "beta");
const alphaPort = freePort();
const betaPort = freePort();
const engines: { child: ReturnType<typeof Bun.spawn> }[] = [];
try {
  mars(alpha, "create-cluster", "--host", "alpha", "--listen", `127.0.0.1:${alphaPort}`);
  const first = await startEngine(alpha);
  mars(beta, "join-cluster", `127.0.0.1:${alphaPort}`, "--secret-file",
    join(alpha, "cluster-secret"), "--host", "beta", "--listen", `127.0.0.1:${betaPort}`);
  first.child.kill("SIGTERM");
  await first.child.exited;

  const createBegin = performance.now();
  for (let index = 0; index < resourceCount; index++) {
    const disk = join(root, `disk-${index}.img`);
    writeFileSync(disk, "");
    truncateSync(disk, 1024 * 1024);
    mars(alpha, "create-resource", `r${index}`, disk);
  }
  const createSeconds = (performance.now() - createBegin) / 1000;
  console.log(`created ${resourceCount} resources (engine down) in ${createSeconds.toFixed(1)} s`);

  const started = await startEngine(alpha);
  engines.push(started);
  const peer = await startEngine(beta);
  engines.push(peer);
  console.log(`start-up with ${resourceCount} resources: ${started.startupMs.toFixed(0)} ms`);
  await Bun.sleep(3000);

  const pid = started.child.pid;
  const ticksBefore = cpuTicks(pid);
  const idleBegin = performance.now();
  await Bun.sleep(idleSeconds * 1000);
  const elapsedSeconds = (performance.now() - idleBegin) / 1000;
  const cpuPercent = ((cpuTicks(pid) - ticksBefore) / 100 / elapsedSeconds) * 100;
  const rss = rssBytes(pid);
  const rssMebibytes = (rss / 1024 / 1024).toFixed(0);
  console.log(`idle over ${elapsedSeconds.toFixed(0)} s: ` +
    `cpu ${cpuPercent.toFixed(2)} % of a core, rss ${rssMebibytes} MiB`);

  const samples: number[] = [];
  for (let round = 0; round < 5; round++) {
    const begin = performance.now();
    mars(alpha, "set-key", "user/bench", String(round));
    for (;;) {
      const seen = Bun.spawnSync([binary, "get-key", "user/bench", "--home", beta],
        { stdout: "pipe", stderr: "pipe" }).stdout.toString().trim();
      if (seen === String(round)) break;
      if (performance.now() - begin > 10_000) throw new Error("change did not arrive");
    }
    samples.push(performance.now() - begin);
  }
  samples.sort((left, right) => left - right);
  const median = samples[Math.floor(samples.length / 2)]!;
  console.log(`one change reaches the peer (incl. two CLI runs): median ${median.toFixed(0)} ms`);
  console.log(`goals: rss ≤ 300 MiB ${rss <= goals.rssBytes ? "met" : "MISSED"}, idle cpu < 3 % ` +
    `${cpuPercent < goals.idleCpuPercent ? "met" : "MISSED"}, propagation < 1 s ` +
    `${median < goals.propagationMs ? "met" : "MISSED"}`);
} finally {
  for (const engine of engines) {
    engine.child.kill("SIGTERM");
    await engine.child.exited;
  }
  rmSync(root, { recursive: true, force: true });
}
