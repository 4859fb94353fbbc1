/** `mars serve` against independent NBD clients: nbdinfo, qemu-io, nbdcopy, fio with verify. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { binaryPath } from "../support/binary.ts";
import { runTool, sha256OfFile, startServer, type RunningServer } from "../support/nbd-serve.ts";

const diskBytes = 320 * 1024 * 1024;

describe("mars serve with real NBD clients", () => {
  let server: RunningServer;
  let disk: string;

  beforeAll(async () => {
    server = await startServer(["--size", String(diskBytes), "--name", "e2e"],
      { diskInDirectory: true });
    disk = join(server.directory, "disk.img");
  });
  afterAll(() => server?.cleanup());

  test("nbdinfo reports size, flags and block sizes", async () => {
    const result = await runTool(["nbdinfo", "--json", server.uri]);
    expect(result.exitCode).toBe(0);
    const info = JSON.parse(result.stdout);
    expect(info.protocol).toBe("newstyle-fixed");
    expect(info.TLS).toBe(false);
    const entry = info.exports[0];
    expect(entry["export-name"]).toBe("e2e");
    expect(entry["export-size"]).toBe(diskBytes);
    expect(entry.description).toBe(disk);
    for (const flag of ["can_flush", "can_fua", "can_trim", "can_zero", "can_multi_conn"]) {
      expect(entry[flag]).toBe(true);
    }
    expect(entry.is_read_only).toBe(false);
    expect(entry.block_size_minimum).toBe(1);
    expect(entry.block_size_preferred).toBe(4096);
    expect(entry.block_size_maximum).toBe(32 * 1024 * 1024);
  });

  test("qemu-io writes patterns, discards and zeroes, and verifies every read", async () => {
    const script = [
      "write -P 0xab 0 1M", "read -P 0xab 0 1M", "write -P 0x5c -f 1M 64k", "flush",
      "read -P 0x5c 1M 64k", "discard 0 64k", "read -P 0 0 64k", "read -P 0xab 64k 960k",
      "write -z 2M 1M", "read -P 0 2M 1M", "write -P 0x11 3M 4k", "write -z -u 3M 4k",
      "read -P 0 3M 4k", "aio_write -P 0x21 4M 64k", "aio_write -P 0x22 5M 64k", "aio_flush",
      "read -P 0x21 4M 64k", "read -P 0x22 5M 64k",
    ];
    const args = ["qemu-io", "-f", "raw"];
    for (const line of script) args.push("-c", line);
    const result = await runTool([...args, server.uri]);
    expect(result.stderr).toBe("");
    expect(result.stdout).not.toContain("Pattern verification failed");
    expect(result.exitCode).toBe(0);
    // Negative control: a wrong pattern is reported, so the reads above really compared.
    const wrong = await runTool(["qemu-io", "-f", "raw", "-c", "read -P 0xee 0 4k", server.uri]);
    expect(wrong.stdout + wrong.stderr).toContain("Pattern verification failed");
  }, 60_000);

  test("nbdcopy moves a 256 MiB random image in and out unchanged", async () => {
    const image = join(server.directory, "in.img");
    const copy = join(server.directory, "out.img");
    const made = await runTool(["sh", "-c", `head -c 268435456 /dev/urandom > ${image}`]);
    expect(made.exitCode).toBe(0);
    const copyIn = await runTool(["nbdcopy", image, server.uri], { timeoutMs: 90_000 });
    expect(copyIn.stderr).toBe("");
    expect(copyIn.exitCode).toBe(0);
    // Export name "e2e" in the URI path; the disk is larger than the image, so cut it.
    const named = server.uri.replace("nbd+unix:///", "nbd+unix:///e2e");
    const copyOut = await runTool(["sh", "-c",
      `nbdcopy '${named}' - | head -c 268435456 > ${copy}`], { timeoutMs: 90_000 });
    expect(copyOut.exitCode).toBe(0);
    expect(await sha256OfFile(copy)).toBe(await sha256OfFile(image));
  }, 120_000);

  test("fio's nbd engine writes at queue depth 32 and verifies crc32c", async () => {
    const result = await runTool([
      "fio", "--name=verify", "--ioengine=nbd", `--uri=${server.uri}`, "--rw=randwrite",
      "--bs=4k", "--size=32M", "--offset=288M", "--iodepth=32", "--verify=crc32c",
      "--do_verify=1", "--verify_fatal=1", "--output-format=json", "--verify_state_save=0",
    ], { timeoutMs: 60_000 });
    expect(result.exitCode).toBe(0);
    const job = JSON.parse(result.stdout.slice(result.stdout.indexOf("{"))).jobs[0];
    expect(job.error).toBe(0);
    expect(job.write.total_ios).toBeGreaterThan(8000);
    expect(job.read.total_ios).toBeGreaterThan(8000);
  }, 90_000);

  test("SIGTERM stops gracefully: exit 0, socket removed", async () => {
    const code = await server.stop();
    expect(code).toBe(0);
    expect(server.output()).toContain("stopped");
    expect(await Bun.file(server.socketPath).exists()).toBe(false);
  });
});

describe("mars serve over a file and TCP", () => {
  test("a file disk, loopback TCP, and a missing kernel driver that leaves sockets serving",
    async () => {
      const server = await startServer(["--tcp", "0", "--size", "64M", "--nbd-device", "auto"],
        { diskInDirectory: true });
      try {
        expect(server.output()).toMatch(/listening tcp:127\.0\.0\.1:\d+/);
        expect(server.output()).toContain("disk.img");
        const port = /listening tcp:127\.0\.0\.1:(\d+)/.exec(server.output())![1];
        if (!server.output().includes("attached /dev/nbd")) {
          expect(server.errors()).toContain("kernel nbd driver not available: modprobe nbd");
        }
        const written = await runTool(["qemu-io", "-f", "raw", "-c", "write -P 0x42 0 1M",
          `nbd://127.0.0.1:${port}`]);
        expect(written.exitCode).toBe(0);
        const read = await runTool(["qemu-io", "-f", "raw", "-c", "read -P 0x42 0 1M",
          server.uri]);
        expect(read.stdout).not.toContain("verification failed");
        expect(read.exitCode).toBe(0);
      } finally {
        expect(await server.stop()).toBe(0);
        server.cleanup();
      }
    }, 60_000);

  test("a disk file keeps flushed data across a restart", async () => {
    const first = await startServer(["--size", "16M"], { diskInDirectory: true });
    const disk = join(first.directory, "disk.img");
    try {
      const written = await runTool(["qemu-io", "-f", "raw", "-c", "write -P 0x77 4k 8k",
        "-c", "flush", first.uri]);
      expect(written.exitCode).toBe(0);
      expect(await first.stop()).toBe(0);
      const second = await startServer([], { disk });
      try {
        const read = await runTool(["qemu-io", "-f", "raw", "-c", "read -P 0x77 4k 8k",
          second.uri]);
        expect(read.stdout).not.toContain("verification failed");
        expect(read.exitCode).toBe(0);
        expect(await second.stop()).toBe(0);
      } finally {
        second.cleanup();
      }
    } finally {
      first.cleanup();
    }
  }, 60_000);
});

describe("mars serve through the translog (--log-dir)", () => {
  test("fio verifies through the log; flushed writes survive kill -9", async () => {
    const first = await startServer(["--size", "64M", "--log-dir", "LOG"],
      { diskInDirectory: true, logInDirectory: true });
    const disk = join(first.directory, "disk.img");
    const log = join(first.directory, "log");
    try {
      expect(first.output()).toContain(`writes logged in ${log}`);
      const fio = await runTool([
        "fio", "--name=verify", "--ioengine=nbd", `--uri=${first.uri}`, "--rw=randwrite",
        "--bs=4k", "--size=16M", "--iodepth=32", "--verify=crc32c", "--do_verify=1",
        "--verify_fatal=1", "--verify_state_save=0",
      ], { timeoutMs: 60_000 });
      expect(fio.exitCode).toBe(0);
      const written = await runTool(["qemu-io", "-f", "raw", "-c", "write -P 0x6d 32M 1M",
        "-c", "flush", first.uri]);
      expect(written.exitCode).toBe(0);
      first.process.kill("SIGKILL");
      await first.process.exited;
      const second = await startServer(["--log-dir", log], { disk });
      try {
        const read = await runTool(["qemu-io", "-f", "raw", "-c", "read -P 0x6d 32M 1M",
          second.uri]);
        expect(read.stdout).not.toContain("verification failed");
        expect(read.exitCode).toBe(0);
        expect(await second.stop()).toBe(0);
      } finally {
        second.cleanup();
      }
    } finally {
      first.cleanup();
    }
  }, 90_000);
});

describe("mars serve defaults", () => {
  test("without --unix, --tcp or --nbd-device it listens on /run/mars/NAME.sock", async () => {
    const name = `e2e-${process.pid}-${Date.now()}`;
    const child = Bun.spawn([binaryPath, "serve", "--size", "16M", "--name", name],
      { stdout: "pipe", stderr: "pipe" });
    const reader = child.stdout.getReader();
    let output = "";
    while (!output.includes("ready:")) {
      const { value, done } = await reader.read();
      if (done) break;
      output += new TextDecoder().decode(value);
    }
    try {
      const socket = `/run/mars/${name}.sock`;
      expect(output).toContain(`listening unix:${socket}`);
      const info = await runTool(["nbdinfo", "--size", `nbd+unix:///?socket=${socket}`]);
      expect(info.stdout.trim()).toBe(String(16 * 1024 * 1024));
    } finally {
      child.kill("SIGTERM");
      expect(await child.exited).toBe(0);
    }
    expect(existsSync(`/run/mars/${name}.sock`)).toBe(false);
  });
});
