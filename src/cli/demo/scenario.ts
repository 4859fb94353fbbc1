/** `mars demo`'s story: a three-host cluster on this machine, replicated, verified, cleaned up. */
import {
  freeLoopbackPort, makeScratchDirectory, removeScratchDirectory,
} from "../../platform/child-process.ts";
import {
  openExport, resource, sleep, sparseDisk, waitFor, writeRandomChunks,
} from "./device.ts";
import { DemoHost } from "./host.ts";
import { detect, failover, handover, repair, verifyAll } from "./roles.ts";

export interface DemoOptions {
  readonly sizeBytes: number;
  readonly writeBytes: number;
  /** Keep the scratch directory (homes, disks, logs) for inspection. */
  readonly keep: boolean;
  readonly print: (line: string) => void;
}

export async function runDemo(options: DemoOptions): Promise<void> {
  const root = makeScratchDirectory("mars-demo-");
  const hosts = ["alpha", "beta", "gamma"].map((name) =>
    new DemoHost(name, freeLoopbackPort(), root));
  const story = new Story(options.print);
  options.print(`mars demo: three hosts on this machine, in ${root}`);
  try {
    await story.step("cluster", () => formCluster(hosts));
    await story.step("resource", () => createResource(hosts, options.sizeBytes));
    await story.step("write", () => writeAndWatch(hosts, options.writeBytes));
    await story.step("sync", () => waitSync(hosts[0]!));
    await story.step("verify", () => verifyAll(hosts[0]!, hosts));
    const [alpha, beta, gamma] = hosts as [DemoHost, DemoHost, DemoHost];
    await story.step("handover", () => handover(alpha, beta));
    await story.step("failover", () => failover(beta, gamma, [alpha]));
    await story.step("detect", () => detect(beta));
    await story.step("repair", () => repair(beta, gamma));
    await story.step("equal", () => verifyAll(gamma, hosts));
    options.print(`demo finished in ${story.elapsedSeconds()} s: every replica equals the primary`);
  } finally {
    const stopStartedMs = performance.now();
    await Promise.all(hosts.map((host) => host.stop()));
    const stopSeconds = ((performance.now() - stopStartedMs) / 1000).toFixed(1);
    options.print(`engines stopped [${stopSeconds} s]`);
    if (options.keep) options.print(`kept ${root} (homes, disks, logfiles)`);
    else removeScratchDirectory(root);
  }
}

/** Prints one line per step: its name, what happened, and how long it took. */
class Story {
  private readonly startedMs = performance.now();
  private number = 0;

  constructor(private readonly print: (line: string) => void) {}

  async step(name: string, action: () => Promise<string>): Promise<void> {
    this.number++;
    const startedMs = performance.now();
    const outcome = await action();
    const seconds = ((performance.now() - startedMs) / 1000).toFixed(1);
    this.print(`${String(this.number).padStart(2)}. ${name.padEnd(9)} ${outcome} [${seconds} s]`);
  }

  elapsedSeconds(): string {
    return ((performance.now() - this.startedMs) / 1000).toFixed(1);
  }
}

async function formCluster(hosts: readonly DemoHost[]): Promise<string> {
  const [first, ...others] = hosts as [DemoHost, ...DemoHost[]];
  await first.mars("create-cluster", "--host", first.name, "--listen", first.address);
  await first.start(sleep);
  for (const host of others) {
    await host.mars("join-cluster", first.address, "--secret-file",
      `${first.home}/cluster-secret`, "--host", host.name, "--listen", host.address);
    await host.start(sleep);
  }
  await first.mars("wait-cluster", "--timeout", "20");
  const listing = hosts.map((host) => `${host.name}@${host.address}`).join(", ");
  return `${first.name} created it, the others joined; engines up: ${listing}`;
}

async function createResource(hosts: readonly DemoHost[], sizeBytes: number): Promise<string> {
  for (const host of hosts) await sparseDisk(host.disk, sizeBytes);
  const [primary, ...secondaries] = hosts as [DemoHost, ...DemoHost[]];
  await primary.mars("create-resource", resource, primary.disk);
  for (const host of secondaries) {
    await waitFor(async () => (await host.view()).resources.length === 1, 10_000,
      `${host.name} to learn of the resource`);
    await host.mars("join-resource", resource, host.disk);
  }
  // The joins must reach the primary first: its `--all` would leave out a member it has not
  // heard of yet.
  await waitFor(async () => (await primary.view()).resources[0]?.members?.length === hosts.length,
    10_000, `${primary.name} to learn of every member`);
  await primary.mars("wait-sync", resource, "--all", "--timeout", "60");
  const mib = sizeBytes / 1024 / 1024;
  return `'${resource}' (${mib} MiB) on ${primary.name}; ${secondaries.map((h) => h.name)
    .join(" and ")} joined and full-synced`;
}

/** Writes random data through the primary's NBD export while watching a secondary's lag. */
async function writeAndWatch(hosts: readonly DemoHost[], writeBytes: number): Promise<string> {
  const [primary, watched] = hosts as [DemoHost, DemoHost];
  const device = await openExport(primary);
  let writing = true;
  let lagBytesMax = 0;
  const watcher = (async () => {
    while (writing) {
      const state = (await watched.view()).resources[0]?.replication;
      const lag = (state?.fetchLagBytes ?? 0) + (state?.replayLagBytes ?? 0);
      lagBytesMax = Math.max(lagBytesMax, lag);
      await sleep(100);
    }
  })();
  const startedMs = performance.now();
  try {
    await writeRandomChunks(device, writeBytes);
    await device.flush();
  } finally {
    writing = false;
    await watcher;
    await device.close();
  }
  const seconds = (performance.now() - startedMs) / 1000;
  const rate = (writeBytes / 1024 / 1024 / seconds).toFixed(0);
  return `${writeBytes / 1024 / 1024} MiB of random 64 KiB writes through ${primary.name}'s ` +
    `NBD export (${rate} MiB/s, flushed); ${watched.name} lagged up to ` +
    `${(lagBytesMax / 1024).toFixed(0)} KiB meanwhile`;
}

async function waitSync(primary: DemoHost): Promise<string> {
  const result = await primary.mars("wait-sync", resource, "--all", "--timeout", "60");
  const last = result.stdout.trim().split("\n").at(-1) ?? "";
  return `wait-sync --all: ${last || "replicas in sync"}`;
}
