// `bun run bench io`: the uring engine against fio --ioengine=io_uring, same file, alternating.
// Usage: bun run bench io [--file PATH] [--seconds N] [--rounds N] [--engine uring|portable]
//                         [--only randwrite|randread|write]
import { closeSync, constants, existsSync, openSync, statSync } from "node:fs";
import { parseArgs } from "node:util";
import { createPortableEngine } from "../../src/platform/io/portable.ts";
import { UringEngine } from "../../src/platform/io/uring.ts";
import type { IoEngine } from "../../src/platform/types.ts";

const { values } = parseArgs({
  options: {
    file: { type: "string", default: "/var/tmp/mars-bench-io.img" },
    seconds: { type: "string", default: "3" },
    rounds: { type: "string", default: "3" },
    engine: { type: "string", default: "uring" },
    only: { type: "string" },
  },
});
const path = values.file;
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const fileBytes = 1024 ** 3;

interface Workload {
  readonly name: string;
  readonly write: boolean;
  readonly random: boolean;
  readonly blockBytes: number;
  readonly depth: number;
}

const workloads: Workload[] = [
  { name: "4 KiB random write, QD32", write: true, random: true, blockBytes: 4096, depth: 32 },
  { name: "4 KiB random read, QD32", write: false, random: true, blockBytes: 4096, depth: 32 },
  {
    name: "1 MiB sequential write, QD8", write: true, random: false,
    blockBytes: 1 << 20, depth: 8,
  },
];

/** fio's name for the workload, also what --only takes. */
const mode = (workload: Workload) =>
  `${workload.random ? "rand" : ""}${workload.write ? "write" : "read"}`;

interface Measurement {
  readonly iops: number;
  readonly megabytesPerSecond: number;
}

function openEngine(): IoEngine {
  if (values.engine === "portable") return createPortableEngine();
  const engine = UringEngine.open();
  if (!(engine instanceof UringEngine)) throw new Error(`io_uring unavailable: ${engine.message}`);
  return engine;
}

/** Writes the whole file once so that reads hit allocated blocks, not holes. */
function prepareFile(): void {
  if (existsSync(path) && statSync(path).size === fileBytes) return;
  console.error(`preparing ${path} (1 GiB, written once with fio)`);
  const result = Bun.spawnSync(["fio", "--name=prepare", `--filename=${path}`, "--rw=write",
    "--bs=1M", "--size=1G", "--direct=1", "--ioengine=io_uring", "--iodepth=8"],
  { stdout: "ignore", stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error("fio could not prepare the file");
}

async function runMars(workload: Workload): Promise<Measurement> {
  const engine = openEngine();
  const fd = openSync(path, constants.O_RDWR | constants.O_DIRECT);
  const blocks = fileBytes / workload.blockBytes;
  let completed = 0;
  let nextBlock = 0;
  const deadline = performance.now() + seconds * 1000;
  const worker = async () => {
    const buffer = engine.allocateBuffer!(workload.blockBytes);
    buffer.fill(0x5a);
    while (performance.now() < deadline) {
      const block = workload.random ? Math.floor(Math.random() * blocks) : nextBlock++ % blocks;
      const offset = block * workload.blockBytes;
      const kind = workload.write ? "write" : "read";
      const [result] = await engine.submit([{ kind, fd, offset, buffer }]);
      if (!result?.ok) throw new Error(`mars ${kind} failed: ${JSON.stringify(result)}`);
      completed++;
    }
  };
  const started = performance.now();
  await Promise.all(Array.from({ length: workload.depth }, worker));
  const elapsedSeconds = (performance.now() - started) / 1000;
  await engine.close();
  closeSync(fd);
  const iops = completed / elapsedSeconds;
  return { iops, megabytesPerSecond: (iops * workload.blockBytes) / 1e6 };
}

function runFio(workload: Workload): Measurement {
  const result = Bun.spawnSync(["fio", "--name=peer", `--filename=${path}`,
    `--rw=${mode(workload)}`,
    `--bs=${workload.blockBytes}`, `--iodepth=${workload.depth}`, "--ioengine=io_uring",
    "--direct=1", "--size=1G", `--runtime=${seconds}`, "--time_based",
    "--output-format=json"], { stdout: "pipe", stderr: "inherit" });
  if (result.exitCode !== 0) throw new Error("fio failed");
  const report = JSON.parse(result.stdout.toString()) as {
    jobs: Array<Record<"read" | "write", { iops: number; bw_bytes: number }>>;
  };
  const side = report.jobs[0]![workload.write ? "write" : "read"];
  return { iops: side.iops, megabytesPerSecond: side.bw_bytes / 1e6 };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

function format(measurement: Measurement, random: boolean): string {
  return random
    ? `${Math.round(measurement.iops).toLocaleString("en")} IOPS`
    : `${Math.round(measurement.megabytesPerSecond).toLocaleString("en")} MB/s`;
}

prepareFile();
console.log(`io bench: ${path}, ${seconds} s per run, ${rounds} alternating rounds, ` +
  `mars engine ${values.engine} vs fio io_uring, O_DIRECT`);
const rows: string[] = [];
for (const workload of workloads.filter((each) => !values.only || mode(each) === values.only)) {
  const mars: Measurement[] = [];
  const fio: Measurement[] = [];
  for (let round = 0; round < rounds; round++) {
    if (round % 2 === 0) {
      mars.push(await runMars(workload));
      fio.push(runFio(workload));
    } else {
      fio.push(runFio(workload));
      mars.push(await runMars(workload));
    }
    const ratio = mars[round]!.iops / fio[round]!.iops;
    console.log(`  ${workload.name} round ${round + 1}: mars ${format(mars[round]!, true)}, ` +
      `fio ${format(fio[round]!, true)} (${ratio.toFixed(2)}x)`);
  }
  const marsMedian = { iops: median(mars.map((m) => m.iops)),
    megabytesPerSecond: median(mars.map((m) => m.megabytesPerSecond)) };
  const fioMedian = { iops: median(fio.map((m) => m.iops)),
    megabytesPerSecond: median(fio.map((m) => m.megabytesPerSecond)) };
  const ratio = median(mars.map((m, index) => m.iops / fio[index]!.iops));
  rows.push(`| ${workload.name} | ${format(marsMedian, workload.random)} | ` +
    `${format(fioMedian, workload.random)} | ${ratio.toFixed(2)} |`);
}
console.log("\n| workload | mars (median) | fio io_uring (median) | mars/fio (median of rounds) |");
console.log("|---|---|---|---|");
for (const row of rows) console.log(row);
