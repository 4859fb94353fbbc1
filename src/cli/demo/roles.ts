/** `mars demo`'s role steps: planned handover, failover into a split brain, and its repair. */
import { MarsError } from "../../lib/errors.ts";
import { sha256OfFile } from "../../platform/file-digest.ts";
import {
  deviceDigest, openExport, resource, sleep, waitFor, writeRandomChunks,
} from "./device.ts";
import type { DemoHost } from "./host.ts";

/** Data each role step writes (small: the story is about roles, not throughput). */
const roleWriteBytes = 4 * 1024 * 1024;

/** alpha writes and closes; beta takes over; every byte alpha wrote reads back on beta. */
export async function handover(from: DemoHost, to: DemoHost): Promise<string> {
  const device = await openExport(from);
  let before: string;
  try {
    await writeRandomChunks(device, roleWriteBytes);
    await device.flush();
    before = await deviceDigest(device);
  } finally {
    await device.close();
  }
  const result = await to.mars("primary", resource, "--timeout", "30");
  const after = await openExport(to);
  try {
    if ((await deviceDigest(after)) !== before) {
      throw new MarsError("engine", `${to.name}'s device differs from ${from.name}'s after ` +
        "the handover");
    }
    await writeRandomChunks(after, roleWriteBytes);
    await after.flush();
  } finally {
    await after.close();
  }
  const took = /done in (\d+ ms)/.exec(result.stdout)?.[1] ?? "?";
  return `${from.name} → ${to.name} in ${took}: ${from.name}'s device read back equal on ` +
    `${to.name}, which then wrote ${roleWriteBytes / 1024 / 1024} MiB more`;
}

/**
 * The primary writes a tail nobody fetches (the others' fetch is paused), dies (kill -9), and
 * another host takes over with --force and writes too: two histories.
 */
export async function failover(
  old: DemoHost, next: DemoHost, others: readonly DemoHost[],
): Promise<string> {
  for (const host of [next, ...others]) await host.mars("pause-fetch", resource);
  const device = await openExport(old);
  try {
    await writeRandomChunks(device, roleWriteBytes);
    await device.flush();
  } finally {
    await device.close();
  }
  await heardOfLogEnd(old, next);
  await old.kill();
  // Hold the old primary's repair (pause-sync) so that the split brain can be shown first.
  await old.mars("pause-sync", resource);
  const forced = await next.mars("primary", "--force", resource, "--timeout", "30");
  for (const host of [next, ...others]) await host.mars("resume-fetch", resource);
  const after = await openExport(next);
  try {
    await writeRandomChunks(after, roleWriteBytes);
    await after.flush();
  } finally {
    await after.close();
  }
  const missing = /not fetched of (.*)$/m.exec(forced.stdout)?.[1] ?? "?";
  return `${old.name} killed (-9) with an unfetched tail; ${next.name} took over (--force; ` +
    `not fetched of ${missing}) and wrote ${roleWriteBytes / 1024 / 1024} MiB`;
}

/**
 * Waits until `listener` knows the log end `primary` reports now: the tail it did not fetch is
 * then known, and the failover can say how much of it is lost.
 */
async function heardOfLogEnd(primary: DemoHost, listener: DemoHost): Promise<void> {
  const endOf = (view: Awaited<ReturnType<DemoHost["view"]>>, host: string) =>
    JSON.stringify(view.resources[0]?.replicas[host]?.logEnd ?? null);
  // Reports go out every 500 ms: an end that stood still for 8 polls (100 ms apart) is the end
  // after the flush, not one from before it.
  let end = "null";
  let stablePolls = 0;
  await waitFor(async () => {
    const reported = endOf(await primary.view(), primary.name);
    const heard = endOf(await listener.view(), primary.name);
    stablePolls = reported === end ? stablePolls + 1 : 0;
    end = reported;
    return stablePolls >= 8 && heard === end && end !== "null";
  }, 10_000, `${listener.name} to hear of ${primary.name}'s log end`);
}

/** The old primary restarts, learns it is not primary any more, and finds the split. */
export async function detect(old: DemoHost): Promise<string> {
  await old.start(sleep);
  let line = "";
  await waitFor(async () => {
    const result = await old.mars("view", resource);
    line = /split-brain@\S+=("[^"]*")/.exec(result.stdout)?.[1] ?? "";
    return line !== "";
  }, 30_000, `${old.name} to find the split brain`);
  // The winner publishes its side of the split within a second ("?" until then).
  await waitFor(async () => {
    const result = await old.mars("view", resource);
    line = /split-brain@\S+=("[^"]*")/.exec(result.stdout)?.[1] ?? line;
    return !/-wrote=\?/.test(line);
  }, 5_000, "").catch(() => undefined);
  return `${old.name} restarted as secondary; view: ${line}`;
}

/** Repair: sync switched back on, the loser resyncs the differing blocks; all in sync. */
export async function repair(old: DemoHost, primary: DemoHost): Promise<string> {
  await old.mars("resume-sync", resource);
  await waitFor(async () => (await old.mars("view", resource)).stdout.includes("(repairing)"),
    30_000, `${old.name} to start its repair`);
  for (let attempt = 0; ; attempt++) {
    const result = await primary.marsAllowingFailure("wait-sync", resource, "--all",
      "--timeout", "30");
    if (result.exitCode === 0) break;
    if (attempt >= 3) throw new MarsError("engine", `wait-sync: ${result.stderr.trim()}`);
    await sleep(500);
  }
  const log = old.log();
  const blocks = /sync-copied.*?transferredBlocks[=:"]+(\d+)/.exec(log)?.[1];
  const kept = /logfiles-kept-aside.*?path[=:"]+"?([^"\s]+)/.exec(log)?.[1] ?? "?";
  const copied = blocks === undefined ? "?" : `${(Number(blocks) * 4 / 1024).toFixed(1)} MiB`;
  const compared = /sync-copied.*?targeted[=:"]+true.*?comparedBytes[=:"]+(\d+)/.exec(log)?.[1];
  const how = compared === undefined ? "by a full fast sync"
    : `by a targeted repair (compared ${(Number(compared) / 1024 / 1024).toFixed(1)} MiB)`;
  return `${old.name} resynced ${how} only the differing blocks (${copied}); its divergent ` +
    `logfiles kept in ${kept.split("/").slice(-2).join("/")}; wait-sync --all done`;
}

/** The primary's device view must equal every other host's backing disk. */
export async function verifyAll(primary: DemoHost, hosts: readonly DemoHost[]): Promise<string> {
  const device = await openExport(primary);
  let expected: string;
  try {
    expected = await deviceDigest(device);
  } finally {
    await device.close();
  }
  for (const host of hosts) {
    if (host === primary) continue;
    if ((await sha256OfFile(host.disk)) !== expected) {
      throw new MarsError("engine", `${host.name}'s disk differs from ${primary.name}'s device`);
    }
  }
  return `sha256 ${expected.slice(0, 16)}… on ${hosts.map((host) => host.name).join(", ")}`;
}
