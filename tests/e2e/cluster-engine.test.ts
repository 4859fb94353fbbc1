// One engine's life: systemd notify, JSON logs, one engine per home, crash and restart.
import { afterAll, expect, test } from "bun:test";
import { truncateSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { temporaryDirectory } from "../support/binary.ts";
import { engineHandle, eventually, stopAllEngines } from "../support/engines.ts";

const root = temporaryDirectory("mars-e2e-engine-");
afterAll(async () => {
  await stopAllEngines();
});

test("an engine announces READY, logs JSON, owns its home, and survives a crash", async () => {
  const solo = engineHandle("solo", root);
  const created = await solo.mars("create-cluster", "--host", "solo",
    "--listen", `127.0.0.1:${solo.port}`);
  expect(created.exitCode).toBe(0);
  const disk = join(root, "solo.img");
  writeFileSync(disk, "");
  truncateSync(disk, 8 * 1024 * 1024);
  const offline = await solo.mars("create-resource", "r1", disk);
  expect(offline.exitCode).toBe(0);
  expect(offline.stdout).toContain("it will act on start");
  const again = await solo.mars("join-resource", "r1", disk);
  expect(again.exitCode).toBe(4);
  const small = join(root, "small.img");
  writeFileSync(small, "");
  truncateSync(small, 1024 * 1024);
  const tooSmall = await solo.mars("create-resource", "r2", small, "--size", "2M");
  expect(tooSmall.exitCode).toBe(4);
  expect(tooSmall.stderr).toContain("the resource needs 2097152");
  const unknown = await solo.mars("up", "r9");
  expect(unknown.exitCode).toBe(8);

  const notifyPath = join(root, "notify.sock");
  const receiver = Bun.spawn(["python3", "-c", [
    "import socket,sys",
    "s=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)",
    `s.bind(${JSON.stringify(notifyPath)})`,
    "print('bound', flush=True)",
    "print(s.recv(200).decode().replace(chr(10), ' '), flush=True)",
  ].join("\n")], { stdout: "pipe" });
  const reader = receiver.stdout.getReader();
  expect(new TextDecoder().decode((await reader.read()).value)).toContain("bound");
  await solo.start(["--log-format", "json"], { NOTIFY_SOCKET: notifyPath });
  let notified = "";
  while (!notified.includes("READY=1")) {
    const { value, done } = await reader.read();
    if (done) break;
    notified += new TextDecoder().decode(value);
  }
  expect(notified).toContain("READY=1");
  const started = solo.log().split("\n").find((line) => line.includes("engine-started"))!;
  expect(JSON.parse(started)).toMatchObject({ level: "info", event: "engine-started" });

  const second = engineHandle("solo", root);
  await expect(second.start()).rejects.toThrow("another engine already runs");

  const view = JSON.parse((await solo.mars("view", "--json")).stdout);
  expect(view.resources[0]).toMatchObject({ resource: "r1", disk: "attached", role: "primary" });
  await solo.kill();
  await solo.start();
  await eventually(async () =>
    JSON.parse((await solo.mars("view", "--json")).stdout).resources[0].disk === "attached",
  5_000);
  expect(await solo.stop()).toBe(0);
}, 30_000);
