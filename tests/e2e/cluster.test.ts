// Three engines on loopback form a cluster, share resources, restart, and keep strangers out.
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../support/binary.ts";
import { engineHandle, eventually, stopAllEngines, type EngineHandle } from "../support/engines.ts";

const root = temporaryDirectory("mars-e2e-cluster-");
const [alpha, beta, gamma] = ["alpha", "beta", "gamma"].map((name) => engineHandle(name, root)) as
  [EngineHandle, EngineHandle, EngineHandle];
const everyone = [alpha, beta, gamma];
const runArgs = ["--tombstone-retention", "0"];

function disk(name: string, sizeBytes = 64 * 1024 * 1024): string {
  const path = join(root, `${name}.img`);
  writeFileSync(path, "");
  truncateSync(path, sizeBytes);
  return path;
}

async function viewJson(engine: EngineHandle) {
  const result = await engine.mars("view", "--json");
  expect(result.stderr).toBe("");
  expect(result.exitCode).toBe(0);
  return JSON.parse(result.stdout);
}

async function rawKeys(engine: EngineHandle): Promise<Map<string, { deleted: boolean }>> {
  const result = await engine.mars("view", "--raw", "--json");
  expect(result.exitCode).toBe(0);
  const lines = result.stdout.trim().split("\n").filter((line) => line.length > 0);
  return new Map(lines.map((line) => JSON.parse(line)).map((entry) => [entry.key, entry]));
}

beforeAll(async () => {
  const created = await alpha.mars("create-cluster", "--host", "alpha",
    "--listen", `127.0.0.1:${alpha.port}`);
  expect(created.exitCode).toBe(0);
  await alpha.start(runArgs);
  for (const engine of [beta, gamma]) {
    const joined = await engine.mars("join-cluster", `127.0.0.1:${alpha.port}`,
      "--secret-file", join(alpha.home, "cluster-secret"), "--host", engine.name,
      "--listen", `127.0.0.1:${engine.port}`);
    expect(joined.stderr).toBe("");
    expect(joined.exitCode).toBe(0);
    await engine.start(runArgs);
  }
}, 60_000);

afterAll(async () => {
  await stopAllEngines();
});

describe("a three-host cluster", () => {
  test("every engine sees every other alive (wait-cluster)", async () => {
    for (const engine of everyone) {
      const result = await engine.mars("wait-cluster", "--timeout", "10");
      expect(result.stderr).toBe("");
      expect(result.stdout).toContain("all 2 peers alive");
    }
  });

  test("resources created and joined are visible everywhere; a change arrives within 1 s",
    async () => {
      const created = await alpha.mars("create-resource", "r1", disk("alpha-r1"));
      expect(created.exitCode).toBe(0);
      expect(created.stdout).toContain("export: nbd+unix:///r1?socket=");
      for (const engine of [beta, gamma]) {
        await eventually(async () => (await viewJson(engine)).resources.length === 1, 1_000);
        const joined = await engine.mars("join-resource", "r1", disk(`${engine.name}-r1`));
        expect(joined.exitCode).toBe(0);
      }
      for (const engine of everyone) {
        const members = async () => (await viewJson(engine)).resources[0].members.length === 3;
        await eventually(members, 1_000);
      }
      const paused = await gamma.mars("pause-sync", "r1", "--global");
      expect(paused.exitCode).toBe(0);
      for (const engine of [alpha, beta]) {
        const elapsed = await eventually(async () =>
          (await viewJson(engine)).resources[0].switches.sync === false, 1_000);
        expect(elapsed).toBeLessThan(1_000);
      }
      const view = await viewJson(alpha);
      expect(view.resources[0]).toMatchObject({
        resource: "r1", role: "primary", primary: "alpha", disk: "attached",
        connection: { alive: 2, peers: 2 },
      });
      expect((await viewJson(beta)).resources[0]).toMatchObject({
        role: "secondary", disk: "attached",
      });
    });

  test("a deletion is a tombstone until every member has seen it, then it is purged",
    async () => {
      expect((await beta.mars("set-key", "user/note", "\"hello\"")).exitCode).toBe(0);
      for (const engine of everyone) {
        await eventually(async () => (await rawKeys(engine)).has("user/note"), 1_000);
      }
      expect((await beta.mars("set-key", "user/note", "--delete")).exitCode).toBe(0);
      for (const engine of everyone) {
        await eventually(async () => (await rawKeys(engine)).get("user/note")?.deleted === true ||
          !(await rawKeys(engine)).has("user/note"), 1_000);
      }
      for (const engine of everyone) {
        await eventually(async () => !(await rawKeys(engine)).has("user/note"), 15_000);
      }
      expect(alpha.log()).toContain("tombstones-purged");
    }, 30_000);

  test("an engine restart restores every resource exactly", async () => {
    // Replication state (positions, rates, report times) is live data, not configuration.
    const configuration = (resources: Record<string, unknown>[]) =>
      resources.map(({ replication: _live, replicas: _reports, ...rest }) => rest);
    const before = configuration((await viewJson(alpha)).resources);
    expect(await alpha.stop()).toBe(0);
    expect(alpha.log()).toContain("engine-stopped");
    const down = await alpha.mars("view");
    expect(down.stderr).toContain("it will act on start");
    await alpha.start(runArgs);
    await eventually(async () => (await viewJson(alpha)).resources[0].connection.alive === 2,
      5_000);
    expect(configuration((await viewJson(alpha)).resources)).toEqual(before);
  }, 30_000);

  test("members leave a resource before it can be deleted; a host leaves the cluster",
    async () => {
      const refused = await alpha.mars("delete-resource", "r1");
      expect(refused.exitCode).toBe(4);
      expect(refused.stderr).toContain("still has members beta,gamma");
      expect((await gamma.mars("leave-resource", "r1")).exitCode).toBe(0);
      const notMember = await gamma.mars("up", "r1");
      expect(notMember.exitCode).toBe(4);
      const primaryLeaves = await alpha.mars("leave-resource", "r1");
      expect(primaryLeaves.exitCode).toBe(4);
      await eventually(async () =>
        (await viewJson(alpha)).resources[0].members.length === 2, 1_000);
      expect((await gamma.mars("leave-cluster")).exitCode).toBe(0);
      await eventually(async () => !(await rawKeys(alpha)).has("member/gamma") ||
        (await rawKeys(alpha)).get("member/gamma")?.deleted === true, 1_000);
      await gamma.stop();
      const alive = await alpha.mars("wait-cluster", "--timeout", "10");
      expect(alive.stdout).toContain("all 1 peers alive");
    }, 30_000);

  test("a wrong secret and a raw connection get nothing, and the engine lives on", async () => {
    const wrong = join(root, "wrong-secret");
    const secretLine = (await Bun.file(join(alpha.home, "cluster-secret")).text()).trim();
    writeFileSync(wrong, `${secretLine.slice(0, -4)}0000\n`);
    const intruder = engineHandle("intruder", root);
    const refused = await intruder.mars("join-cluster", `127.0.0.1:${alpha.port}`,
      "--secret-file", wrong, "--host", "intruder", "--listen", `127.0.0.1:${intruder.port}`);
    expect(refused.exitCode).toBe(9);
    expect(refused.stderr).toContain("authentication failed");
    let received = "";
    let closed = false;
    const socket = await Bun.connect({
      hostname: "127.0.0.1", port: alpha.port,
      socket: {
        data: (_socket, chunk) => { received += new TextDecoder().decode(chunk); },
        close: () => { closed = true; },
      },
    });
    socket.write("\x00\x00\x00\x05hello");
    await eventually(async () => closed, 5_000);
    expect(received).toContain("refusal");
    expect(received).not.toContain("member");
    expect(alpha.log()).toContain("peer-refused");
    expect(alpha.running).toBe(true);
    const keys = await rawKeys(alpha);
    expect(keys.has("member/intruder")).toBe(false);
    const alive = await alpha.mars("wait-cluster", "--timeout", "10");
    expect(alive.exitCode).toBe(0);
  }, 30_000);
});
