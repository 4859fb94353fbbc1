/** `bun run bench replication`: log shipping at 0 and 120 ms RTT, replay rate vs write rate. */
// Usage: bun run bench replication [MIB] [--runs N]. Each run measures every configuration
// once, in turn; figures are medians over the runs, ratios medians of each run's own ratio (the
// two sides of a ratio measured minutes apart, not hours).
import { rmSync } from "node:fs";
import { parseArgs } from "node:util";
import { temporaryDirectory } from "../../tests/support/binary.ts";
import { stopAllEngines, type EngineHandle } from "../../tests/support/engines.ts";
import { runTool } from "../../tests/support/nbd-serve.ts";
import {
  replicationCluster, viewJson, type ReplicationCluster,
} from "../../tests/support/replication-cluster.ts";
import { WanProxy } from "../../tests/support/wan-proxy.ts";

const { values: options, positionals } = parseArgs({
  options: { runs: { type: "string", default: "3" } }, allowPositionals: true,
});
// 1 GiB by default: at a few hundred MiB/s the 500 ms report interval would otherwise be a
// large part of the timed replay (256 MiB gave an apply ratio of 0.8 where 1 GiB gives 1.8).
const dataMiB = Number(positionals[0] ?? 1024);
const runs = Number(options.runs);
const goals = { rttRatio: 0.8, applyRatio: 0.9 };

interface Position {
  sequence: number;
  offsetBytes: number;
}

const reached = (have: Position | null | undefined, target: Position) =>
  have != null && (have.sequence > target.sequence ||
    (have.sequence === target.sequence && have.offsetBytes >= target.offsetBytes));

async function replication(engine: EngineHandle) {
  return (await viewJson(engine)).resources[0].replication;
}

/** Polls until `check` holds; returns the elapsed seconds. */
async function until(check: () => Promise<boolean>, timeoutMs = 600_000): Promise<number> {
  const begin = performance.now();
  while (!(await check())) {
    if (performance.now() - begin > timeoutMs) throw new Error("benchmark step timed out");
    await Bun.sleep(200);
  }
  return (performance.now() - begin) / 1000;
}

/** Writes `dataMiB` with fio on the primary; returns MiB/s as fio measured it. */
async function write(cluster: ReplicationCluster, offsetMiB: number): Promise<number> {
  const result = await runTool([
    "fio", "--name=bench", "--ioengine=nbd", `--uri=${cluster.uri}`, "--rw=write",
    "--bs=256k", `--size=${dataMiB}M`, `--offset=${offsetMiB}M`, "--iodepth=16",
    "--output-format=json", "--refill_buffers=1",
  ], { timeoutMs: 600_000, cwd: cluster.root });
  if (result.exitCode !== 0) throw new Error(`fio: ${result.stderr}`);
  const job = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))).jobs[0];
  return job.write.bw_bytes / 1048576;
}

/** The primary's log end once it stands still (reports are published every 500 ms). */
async function settledLogEnd(primary: EngineHandle): Promise<Position> {
  let previous = "";
  let end: Position = { sequence: 0, offsetBytes: 0 };
  await until(async () => {
    end = (await replication(primary)).logEnd;
    const text = JSON.stringify(end);
    const same = text === previous;
    previous = text;
    if (!same) await Bun.sleep(600);
    return same;
  });
  return end;
}

/** Median of the non-zero fetch rates beta reports while `done` has not been reached. */
async function streamingRates(beta: EngineHandle, target: Position) {
  const rates: number[] = [];
  const seconds = await until(async () => {
    const report = await replication(beta);
    if (report?.fetchRateBytesPerSecond > 0) rates.push(report.fetchRateBytesPerSecond);
    return reached(report?.fetched, target);
  });
  rates.sort((left, right) => left - right);
  const median = rates.length === 0 ? 0 : rates[Math.floor(rates.length / 2)]! / 1048576;
  return { seconds, medianMiBps: median };
}

async function measure(rttMs: number, viaProxy: boolean) {
  const root = temporaryDirectory("mars-bench-replication-");
  const cluster = await replicationCluster(root, ["alpha", "beta"],
    { sizeBytes: (2 * dataMiB + 16) * 1048576 });
  const [beta] = cluster.secondaries as [EngineHandle];
  let proxy: WanProxy | undefined;
  if (viaProxy) {
    proxy = new WanProxy({
      targetPort: cluster.primary.port,
      forward: { delayMs: rttMs / 2 }, backward: { delayMs: rttMs / 2 },
    }).start();
    await cluster.primary.mars("set-key", "member/alpha",
      JSON.stringify({ address: `127.0.0.1:${proxy.port}` }));
    await beta.stop();
    await beta.start();
  }
  try {
    // 1. Shipping a backlog: fetch paused while the primary writes, then timed to the end.
    await beta.mars("pause-fetch", "r1");
    await beta.mars("pause-replay", "r1");
    const writeMiBps = await write(cluster, 0);
    const target = await settledLogEnd(cluster.primary);
    await beta.mars("resume-fetch", "r1");
    const fetched = await streamingRates(beta, target);
    const fetchMiBps = dataMiB / fetched.seconds;
    // 2. Applying a backlog: everything fetched, replay timed from resume to the end.
    await beta.mars("resume-replay", "r1");
    const replaySeconds = await until(async () =>
      reached((await replication(beta))?.replayed, target));
    const applyMiBps = dataMiB / replaySeconds;
    return { rttMs, viaProxy, writeMiBps, fetchMiBps, streamMiBps: fetched.medianMiBps,
      applyMiBps };
  } finally {
    proxy?.stop();
    await stopAllEngines();
    rmSync(root, { recursive: true, force: true });
  }
}

type Result = Awaited<ReturnType<typeof measure>>;
interface RunRatios { rtt: number; backlog: number; apply: number }

function median(values: readonly number[]): number {
  const sorted = [...values].sort((left, right) => left - right);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

const configurations = [[0, false], [0, true], [120, true]] as const;
const perConfiguration: Result[][] = configurations.map(() => []);
const ratios: RunRatios[] = [];
for (let run = 1; run <= runs; run++) {
  const results: Result[] = [];
  for (const [index, [rttMs, viaProxy]] of configurations.entries()) {
    const result = await measure(rttMs, viaProxy);
    results.push(result);
    perConfiguration[index]!.push(result);
    console.log(`run ${run}/${runs} ${viaProxy ? "proxy" : "direct"} rtt ` +
      `${String(rttMs).padStart(3)} ms: primary write ${result.writeMiBps.toFixed(0)} MiB/s; ` +
      `backlog fetched at ${result.fetchMiBps.toFixed(0)} MiB/s (incl. connect), streaming ` +
      `median ${result.streamMiBps.toFixed(0)} MiB/s; apply >= ` +
      `${result.applyMiBps.toFixed(0)} MiB/s`);
  }
  const [direct, lan, wan] = results as [Result, Result, Result];
  ratios.push({ rtt: wan.streamMiBps / lan.streamMiBps, backlog: wan.fetchMiBps / lan.fetchMiBps,
    apply: direct.applyMiBps / direct.writeMiBps });
}
console.log(`medians over ${runs} run${runs === 1 ? "" : "s"}:`);
for (const [index, [rttMs, viaProxy]] of configurations.entries()) {
  const results = perConfiguration[index]!;
  const of = (pick: (result: Result) => number) => median(results.map(pick)).toFixed(0);
  console.log(`  ${viaProxy ? "proxy" : "direct"} rtt ${String(rttMs).padStart(3)} ms: ` +
    `write ${of((result) => result.writeMiBps)} MiB/s, backlog fetch ` +
    `${of((result) => result.fetchMiBps)} MiB/s, streaming ${of((result) => result.streamMiBps)} ` +
    `MiB/s, apply >= ${of((result) => result.applyMiBps)} MiB/s`);
}
const list = (pick: (ratios: RunRatios) => number) =>
  ratios.map((item) => pick(item).toFixed(2)).join(", ");
const rttRatio = median(ratios.map((item) => item.rtt));
const applyRatio = median(ratios.map((item) => item.apply));
console.log(`fetch streaming throughput, 120 ms / 0 ms through the same proxy: median ` +
  `${rttRatio.toFixed(2)} (runs: ${list((item) => item.rtt)}; goal >= ${goals.rttRatio}) ` +
  `${rttRatio >= goals.rttRatio ? "ok" : "MISSED"}; whole backlog incl. reconnect: median ` +
  `${median(ratios.map((item) => item.backlog)).toFixed(2)} (runs: ` +
  `${list((item) => item.backlog)})`);
console.log(`secondary apply rate / primary write rate: median ${applyRatio.toFixed(2)} ` +
  `(runs: ${list((item) => item.apply)}; goal >= ${goals.applyRatio}) ` +
  `${applyRatio >= goals.applyRatio ? "ok" : "MISSED"}`);
console.log(`(${dataMiB} MiB per run, sequential 256 KiB writes, fio nbd iodepth 16; apply ` +
  "is a lower bound: reports come every 500 ms)");
