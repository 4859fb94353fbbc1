// `bun run bench nbd`: fio's nbd engine against `mars serve` and `nbdkit file`, same filesystem.
// Usage: bun run bench nbd [--seconds N] [--rounds N] [--directory DIR] [--only file|translog]
//        [--binary PATH] (default dist/mars; a copy keeps a concurrent rebuild out of the run)
// mars runs twice: over the plain file device, and through the translog (--log-dir) onto a
// file. Rounds alternate between the servers; the table shows medians and mars ÷ nbdkit.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import type { Subprocess } from "bun";

const { values } = parseArgs({
  options: {
    seconds: { type: "string", default: "4" },
    rounds: { type: "string", default: "3" },
    directory: { type: "string", default: "/var/tmp" },
    only: { type: "string" },
    binary: { type: "string" },
  },
});
const seconds = Number(values.seconds);
const rounds = Number(values.rounds);
const diskBytes = 1024 ** 3;
const binary = resolve(values.binary ?? resolve(import.meta.dir, "../../dist/mars"));

interface Workload {
  readonly name: string;
  readonly fioArgs: readonly string[];
  readonly direction: "read" | "write";
  /** Report bandwidth (sequential) instead of operations per second. */
  readonly bandwidth: boolean;
}

const workloads: Workload[] = [
  { name: "4 KiB random write QD32, fsync every 32", direction: "write", bandwidth: false,
    fioArgs: ["--rw=randwrite", "--bs=4k", "--iodepth=32", "--fsync=32"] },
  { name: "4 KiB random write QD32", direction: "write", bandwidth: false,
    fioArgs: ["--rw=randwrite", "--bs=4k", "--iodepth=32"] },
  { name: "1 MiB sequential write QD8", direction: "write", bandwidth: true,
    fioArgs: ["--rw=write", "--bs=1M", "--iodepth=8"] },
  { name: "4 KiB random read QD32", direction: "read", bandwidth: false,
    fioArgs: ["--rw=randread", "--bs=4k", "--iodepth=32"] },
];

interface Server {
  readonly name: string;
  readonly uri: string;
  readonly process: Subprocess;
}

function run(command: string[]): string {
  const result = Bun.spawnSync(command, { stdout: "pipe", stderr: "pipe" });
  if (result.exitCode !== 0) {
    throw new Error(`${command.join(" ")}: ${result.stderr.toString()}`);
  }
  return result.stdout.toString();
}

/** A fully written disk file, so reads do not hit holes. */
function prepareDisk(path: string): void {
  run(["dd", "if=/dev/zero", `of=${path}`, "bs=1M", `count=${diskBytes >> 20}`, "status=none"]);
}

/** Every process started, so that a failure half-way still stops them all. */
const started: Subprocess[] = [];

async function waitForSocket(path: string, child: Subprocess, name: string): Promise<void> {
  started.push(child);
  for (let attempt = 0; attempt < 300; attempt++) {
    if (existsSync(path)) return;
    if (child.exitCode !== null) throw new Error(`${name} exited ${child.exitCode}`);
    await Bun.sleep(20);
  }
  throw new Error(`${name} did not create ${path}`);
}

async function startMars(directory: string, name: string, withLog: boolean): Promise<Server> {
  const disk = join(directory, `${name}.img`);
  prepareDisk(disk);
  const socket = join(directory, `${name}.sock`);
  const args = [binary, "serve", "--disk", disk, "--unix", socket, "--name", name];
  if (withLog) args.push("--log-dir", join(directory, `${name}-log`));
  const child = Bun.spawn(args, { stdout: "ignore", stderr: "inherit" });
  await waitForSocket(socket, child, name);
  return { name, uri: `nbd+unix:///${name}?socket=${socket}`, process: child };
}

async function startNbdkit(directory: string): Promise<Server> {
  const disk = join(directory, "nbdkit.img");
  prepareDisk(disk);
  const socket = join(directory, "nbdkit.sock");
  const child = Bun.spawn(["nbdkit", "-f", "-U", socket, "file", disk],
    { stdout: "ignore", stderr: "inherit" });
  await waitForSocket(socket, child, "nbdkit");
  return { name: "nbdkit file", uri: `nbd+unix:///?socket=${socket}`, process: child };
}

/** Bytes written so far to the block device holding `directory` (/sys/dev/block/M:m/stat). */
function deviceWrittenBytes(directory: string): number | undefined {
  const device = statSync(directory).dev;
  const major = Math.floor(device / 256) & 0xfff;
  const minor = (device & 0xff) | (Math.floor(device / 4096) & 0xfff00);
  try {
    const text = readFileSync(`/sys/dev/block/${major}:${minor}/stat`, "utf8");
    const fields = text.trim().split(/\s+/);
    return Number(fields[6]) * 512; // sectors written
  } catch {
    return undefined; // not a block device (tmpfs)
  }
}

/** Disk write rate during each run of the translog server, MB/s (it writes log and disk). */
const diskRates = new Map<string, number[]>();

/** IOPS, or MB/s for bandwidth workloads. */
function measure(server: Server, workload: Workload): number {
  const before = deviceWrittenBytes(directory);
  const started = performance.now();
  const output = run(["fio", "--name=bench", "--ioengine=nbd", `--uri=${server.uri}`,
    "--size=1G", `--runtime=${seconds}`, "--time_based", "--ramp_time=1",
    "--output-format=json", ...workload.fioArgs]);
  const job = JSON.parse(output.slice(output.indexOf("{"))).jobs[0][workload.direction];
  const after = deviceWrittenBytes(directory);
  if (server.name === "mars-translog" && before !== undefined && after !== undefined) {
    const rates = diskRates.get(workload.name) ?? [];
    rates.push((after - before) / 1e6 / ((performance.now() - started) / 1000));
    diskRates.set(workload.name, rates);
  }
  return workload.bandwidth ? job.bw_bytes / 1e6 : job.iops;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((left, right) => left - right);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const directory = mkdtempSync(join(values.directory, "mars-bench-nbd-"));
const servers: Server[] = [];
try {
  if (values.only !== "translog") servers.push(await startMars(directory, "mars-file", false));
  if (values.only !== "file") servers.push(await startMars(directory, "mars-translog", true));
  servers.push(await startNbdkit(directory));
  const peer = servers[servers.length - 1]!;
  console.log(`fio --ioengine=nbd, ${seconds} s runs (1 s ramp), median of ${rounds} ` +
    `alternating rounds, disks on ${values.directory}`);
  const header = ["workload", ...servers.map((server) => server.name),
    ...servers.slice(0, -1).map((server) => `${server.name} ÷ nbdkit`)];
  const rows: string[][] = [];
  for (const workload of workloads) {
    const samples = servers.map(() => [] as number[]);
    for (let round = 0; round < rounds; round++) {
      servers.forEach((server, index) => samples[index]!.push(measure(server, workload)));
    }
    const medians = samples.map(median);
    const unit = workload.bandwidth ? "MB/s" : "IOPS";
    rows.push([workload.name,
      ...medians.map((value) => `${Math.round(value)} ${unit}`),
      ...medians.slice(0, -1).map((value) => `${(value / medians[medians.length - 1]!)
        .toFixed(2)}×`)]);
    console.error(`done: ${workload.name}`);
  }
  const widths = header.map((title, column) =>
    Math.max(title.length, ...rows.map((row) => row[column]!.length)));
  const line = (cells: string[]) => `| ${cells.map((cell, column) =>
    cell.padEnd(widths[column]!)).join(" | ")} |`;
  console.log(line(header));
  console.log(`|${widths.map((width) => "-".repeat(width + 2)).join("|")}|`);
  for (const row of rows) console.log(line(row));
  console.log(`peer: ${peer.name}; goals: random write ≥ 1.0×, sequential write ≥ 0.8×`);
  for (const [name, rates] of diskRates) {
    console.log(`disk writes during mars-translog's ${name}: median ${Math.round(median(rates))} ` +
      "MB/s (log and writeback; the runs' ramp time included)");
  }
} finally {
  for (const child of started) child.kill("SIGTERM");
  await Promise.all(started.map((child) => child.exited));
  rmSync(directory, { recursive: true, force: true });
}
