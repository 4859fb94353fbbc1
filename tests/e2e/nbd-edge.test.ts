/** Bad and abrupt clients (nbdsh with strict checks off, raw sockets) never hurt the server. */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { runTool, startServer, type RunningServer } from "../support/nbd-serve.ts";

/** nbdsh runs under Debian's python (runTool puts /usr/bin first in PATH). */
async function nbdsh(server: RunningServer, script: string) {
  return runTool(["nbdsh", "-u", server.uri, "-c", script], { timeoutMs: 60_000 });
}

/** Python that speaks just enough NBD by hand to send what no library would. */
const rawClient = `
import socket, struct, sys
def session(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM); s.connect(path)
    greeting = s.recv(18, socket.MSG_WAITALL); assert greeting[:8] == b"NBDMAGIC", greeting
    s.sendall(struct.pack(">I", 3))                        # fixed newstyle, no zeroes
    s.sendall(struct.pack(">QII", 0x49484156454F5054, 1, 0))  # EXPORT_NAME ""
    reply = s.recv(10, socket.MSG_WAITALL); assert len(reply) == 10, reply
    return s
def header(kind, offset, length, magic=0x25609513):
    return struct.pack(">IHHQQI", magic, 0, kind, 7, offset, length)
path, case = sys.argv[1], sys.argv[2]
s = session(path)
if case == "truncated-write":
    s.sendall(header(1, 0, 1 << 20) + b"x" * 1000); s.close()
elif case == "truncated-header":
    s.sendall(header(0, 0, 4096)[:13]); s.close()
elif case == "broken-magic":
    s.sendall(header(0, 0, 4096, magic=0xdeadbeef))
    s.settimeout(10)
    print("closed" if s.recv(16) == b"" else "still open")
elif case == "unknown-command":
    s.sendall(header(42, 0, 0))
    magic, error, cookie = struct.unpack(">IIQ", s.recv(16, socket.MSG_WAITALL))
    print(hex(magic), error, cookie)
`;

async function raw(server: RunningServer, scenario: string) {
  return runTool(["python3", "-c", rawClient, server.socketPath, scenario], {
    timeoutMs: 30_000,
  });
}

describe("mars serve under bad input", () => {
  let server: RunningServer;

  beforeAll(async () => {
    server = await startServer(["--size", "64M"], { diskInDirectory: true });
  });
  afterAll(() => server?.cleanup());

  /** The server still answers a full round trip with correct data. */
  async function expectHealthy() {
    expect(server.process.exitCode).toBeNull();
    const check = await runTool(["qemu-io", "-f", "raw", "-c", "write -P 0x3c 8M 64k",
      "-c", "read -P 0x3c 8M 64k", server.uri]);
    expect(check.stdout).not.toContain("verification failed");
    expect(check.exitCode).toBe(0);
  }

  test("out-of-range read: EINVAL", async () => {
    const result = await nbdsh(server, `
h.set_strict_mode(0)
try:
    h.pread(4096, h.get_size() - 512)
    raise SystemExit("no error")
except nbd.Error as error:
    assert error.errno == "EINVAL", error.errno
    print("ok")`);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("ok");
  });

  test("oversized write: EOVERFLOW after its payload, and the connection lives on", async () => {
    const result = await nbdsh(server, `
h.set_strict_mode(0)
try:
    h.pwrite(bytearray(33 * 1024 * 1024), 0)
    raise SystemExit("no error")
except nbd.Error as error:
    assert error.errno == "EOVERFLOW", error.errno
h.pwrite(b"\\x5a" * 4096, 0)
assert h.pread(4096, 0) == b"\\x5a" * 4096
print("ok")`);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("ok");
  });

  test("a command the server did not offer (CACHE) and an unknown one: EINVAL", async () => {
    const result = await nbdsh(server, `
h.set_strict_mode(0)
try:
    h.cache(4096, 0)
    raise SystemExit("no error")
except nbd.Error as error:
    assert error.errno == "EINVAL", error.errno
print("ok")`);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("ok");
    const unknown = await raw(server, "unknown-command");
    expect(unknown.stdout.trim()).toBe("0x67446698 22 7");
  });

  test("many requests in flight complete and read back", async () => {
    const result = await nbdsh(server, `
errors = []
buffers = [nbd.Buffer.from_bytearray(bytearray([i % 251]) * 4096) for i in range(1024)]
for i, buffer in enumerate(buffers):
    h.aio_pwrite(buffer, i * 4096, lambda error: (errors.append(error.value), 1)[1])
peak = h.aio_in_flight()
while h.aio_in_flight() > 0:
    h.poll(-1)
assert set(errors) == {0}, set(errors)
for i in range(1024):
    assert h.pread(4096, i * 4096) == bytes([i % 251]) * 4096, i
print(peak)`);
    expect(result.stderr).toBe("");
    expect(Number(result.stdout.trim())).toBeGreaterThan(256);
  }, 60_000);

  test("a client that dies with requests in flight", async () => {
    const result = await nbdsh(server, `
import os
buffers = [nbd.Buffer.from_bytearray(bytearray(1 << 20)) for i in range(16)]
for i, buffer in enumerate(buffers):
    h.aio_pwrite(buffer, i << 20)
os._exit(0)`);
    expect(result.exitCode).toBe(0);
    await expectHealthy();
  });

  test("a request cut off mid-payload or mid-header", async () => {
    expect((await raw(server, "truncated-write")).exitCode).toBe(0);
    expect((await raw(server, "truncated-header")).exitCode).toBe(0);
    await expectHealthy();
  });

  test("a broken magic closes that connection only", async () => {
    const result = await raw(server, "broken-magic");
    expect(result.stdout.trim()).toBe("closed");
    await expectHealthy();
    expect(await server.stop()).toBe(0);
  });
});
