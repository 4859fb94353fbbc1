/** Builds a primary and its secondaries as real engines on loopback, for replication tests. */
import { existsSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "./binary.ts";
import { engineHandle, eventually, type EngineHandle } from "./engines.ts";
import { runTool, sha256OfFile } from "./nbd-serve.ts";

export interface ReplicationCluster {
  readonly root: string;
  readonly primary: EngineHandle;
  readonly secondaries: readonly EngineHandle[];
  readonly resource: string;
  /** Backing disk path per engine name. */
  readonly disks: Readonly<Record<string, string>>;
  /** The primary's NBD URI (unix socket). */
  readonly uri: string;
}

const roots: string[] = [];

/** A fresh directory for one test's homes and disks; removed by `removeTestRoots`. */
export function testRoot(prefix: string): string {
  const root = temporaryDirectory(prefix);
  roots.push(root);
  return root;
}

/** Removes every directory `testRoot` made (afterAll, once the engines are stopped). */
export function removeTestRoots(): void {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
}

export function blankDisk(root: string, name: string, sizeBytes: number): string {
  const path = join(root, `${name}.img`);
  writeFileSync(path, "");
  truncateSync(path, sizeBytes);
  return path;
}

export async function viewJson(engine: EngineHandle, ...args: string[]) {
  const result = await engine.mars("view", "--json", ...args);
  if (result.exitCode !== 0) throw new Error(`view failed: ${result.stderr}`);
  return JSON.parse(result.stdout);
}

/** Creates the cluster, the resource on the primary and joins every secondary to it. */
export async function replicationCluster(
  root: string, names: readonly string[], options: {
    resource?: string; sizeBytes?: number; runArgs?: string[];
  } = {},
): Promise<ReplicationCluster> {
  const resource = options.resource ?? "r1";
  const sizeBytes = options.sizeBytes ?? 64 * 1024 * 1024;
  const engines = names.map((name) => engineHandle(name, root));
  const [primary, ...secondaries] = engines as [EngineHandle, ...EngineHandle[]];
  const disks: Record<string, string> = {};
  const check = (what: string, result: { exitCode: number; stderr: string }) => {
    if (result.exitCode !== 0) throw new Error(`${what}: ${result.stderr}`);
  };
  check("create-cluster", await primary.mars("create-cluster", "--host", primary.name,
    "--listen", `127.0.0.1:${primary.port}`));
  await primary.start(options.runArgs);
  disks[primary.name] = blankDisk(root, primary.name, sizeBytes);
  check("create-resource", await primary.mars("create-resource", resource,
    disks[primary.name]!));
  for (const engine of secondaries) {
    check("join-cluster", await engine.mars("join-cluster", `127.0.0.1:${primary.port}`,
      "--secret-file", join(primary.home, "cluster-secret"), "--host", engine.name,
      "--listen", `127.0.0.1:${engine.port}`));
    await engine.start(options.runArgs);
    await eventually(async () => (await viewJson(engine)).resources.length === 1, 5_000);
    disks[engine.name] = blankDisk(root, engine.name, sizeBytes);
    check("join-resource", await engine.mars("join-resource", resource, disks[engine.name]!));
  }
  const socket = `${join(primary.home, "resources", resource)}.nbd.sock`;
  await eventually(async () => existsSync(socket), 5_000);
  // Every joiner's first full sync is done before the test writes: a replica is consistent
  // only from then on, and data written meanwhile would reach it through the sync's copy
  // instead of the log the tests exercise.
  // `wait-sync --all` waits for the members the primary knows of at call time: a join not yet
  // gossiped to it would be left out, and the test would write while that replica still syncs.
  await eventually(async () => {
    const members = (await viewJson(primary)).resources[0]?.members ?? [];
    return names.every((name) => members.includes(name));
  }, 10_000);
  if (secondaries.length > 0) {
    check("wait-sync", await primary.mars("wait-sync", resource, "--all", "--timeout", "60"));
  }
  return {
    root, primary, secondaries, resource, disks,
    uri: `nbd+unix:///${resource}?socket=${socket}`,
  };
}

/** fio's nbd engine: random writes of mixed sizes, verified with crc32c after writing. */
export async function fioWrite(
  uri: string, sizeText: string, cwd: string, extra: string[] = [],
) {
  const result = await runTool([
    "fio", "--name=replicate", "--ioengine=nbd", `--uri=${uri}`, "--rw=randwrite",
    "--bsrange=4k-64k", `--size=${sizeText}`, "--iodepth=16", "--verify=crc32c",
    "--do_verify=1", "--verify_fatal=1", "--randrepeat=0", ...extra,
  ], { timeoutMs: 120_000, cwd });
  if (result.exitCode !== 0) throw new Error(`fio failed: ${result.stdout}\n${result.stderr}`);
  return result;
}

/** sha256 of every engine's backing disk, by engine name. */
export async function diskDigests(cluster: ReplicationCluster): Promise<Record<string, string>> {
  const digests: Record<string, string> = {};
  for (const [name, path] of Object.entries(cluster.disks)) {
    digests[name] = await sha256OfFile(path);
  }
  return digests;
}
