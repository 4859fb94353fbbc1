/** `bun run bench replication`: log shipping at 0 and 120 ms RTT, replay rate vs write rate. */
import { rmSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../../tests/support/binary.ts";
import { stopAllEngines, type EngineHandle } from "../../tests/support/engines.ts";
import { runTool } from "../../tests/support/nbd-serve.ts";
import {
  replicationCluster, viewJson, type ReplicationCluster,
} from "../../tests/support/replication-cluster.ts";
import { WanProxy } from "../../tests/support/wan-proxy.ts";

const dataMiB = Number(process.argv[2] ?? 256);
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

const results = [];
for (const [rttMs, viaProxy] of [[0, false], [0, true], [120, true]] as const) {
  const result = await measure(rttMs, viaProxy);
  results.push(result);
  console.log(`${viaProxy ? "proxy" : "direct"} rtt ${String(rttMs).padStart(3)} ms: ` +
    `primary write ${result.writeMiBps.toFixed(0)} MiB/s; backlog fetched at ` +
    `${result.fetchMiBps.toFixed(0)} MiB/s (incl. connect), streaming median ` +
    `${result.streamMiBps.toFixed(0)} MiB/s; apply >= ${result.applyMiBps.toFixed(0)} MiB/s`);
}
const [direct, lan, wan] = results as [typeof results[0], typeof results[0], typeof results[0]];
const rttRatio = wan.streamMiBps / lan.streamMiBps;
const backlogRatio = wan.fetchMiBps / lan.fetchMiBps;
const applyRatio = direct.applyMiBps / direct.writeMiBps;
console.log(`fetch streaming throughput, 120 ms / 0 ms through the same proxy: ` +
  `${rttRatio.toFixed(2)} (goal >= ${goals.rttRatio}) ` +
  `${rttRatio >= goals.rttRatio ? "ok" : "MISSED"}` +
  `; whole backlog incl. reconnect: ${backlogRatio.toFixed(2)}`);
console.log(`secondary apply rate / primary write rate: ${applyRatio.toFixed(2)} ` +
  `(goal >= ${goals.applyRatio}) ${applyRatio >= goals.applyRatio ? "ok" : "MISSED"}`);
console.log(`(${dataMiB} MiB per run, sequential 256 KiB writes, fio nbd iodepth 16; apply ` +
  "is a lower bound: reports come every 500 ms; full-sync figures come with the sync engine)");
