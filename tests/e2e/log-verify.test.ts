// `mars log verify` on real logfiles: clean exits 0; a byte flipped with dd exits 7 naming it.
import { afterAll, describe, expect, test } from "bun:test";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chainStartDigest } from "../../src/log/position.ts";
import { LogWriter } from "../../src/log/writer.ts";
import { systemClock } from "../../src/platform/clock.ts";
import { systemFiles } from "../../src/platform/files.ts";
import { createPortableEngine } from "../../src/platform/io/portable.ts";
import { runMars, temporaryDirectory } from "../support/binary.ts";

const directory = temporaryDirectory("mars-log-verify-");
const storage = { files: systemFiles, io: createPortableEngine() };

/** Writes a real log (three logfiles, group-committed batches) with the engine's writer. */
async function writeRealLog(): Promise<void> {
  const writer = await LogWriter.start({
    storage, clock: systemClock, directory, resource: "r1", origin: "hostA",
    limits: { logfileBytesMax: 40_000, batchRecordsMax: 4 },
  }, { logfileSequence: 1, firstRecordSequence: 1, previousDigest: chainStartDigest,
    stampFloor: 0 });
  for (let index = 0; index < 24; index++) {
    const payload = new Uint8Array(4096).fill(index + 1);
    writer.append({ kind: "write", deviceOffset: index * 4096, lengthBytes: 4096, payload });
    if (index % 5 === 4) await writer.flush();
  }
  await writer.close();
}

function flipByteWithDd(path: string, offset: number): void {
  const script = `printf '\\xa5' | dd of='${path}' bs=1 seek=${offset} conv=notrunc status=none`;
  const result = Bun.spawnSync(["sh", "-c", script]);
  expect(result.exitCode).toBe(0);
}

afterAll(async () => {
  await storage.io.close();
  rmSync(directory, { recursive: true, force: true });
});

describe("mars log verify", () => {
  test("a clean log directory verifies: every logfile, record and chain link", async () => {
    await writeRealLog();
    const result = await runMars(["log", "verify", directory]);
    expect(result.stderr).toBe("");
    expect(result.exitCode).toBe(0);
    expect(result.stdout).toContain("log-000000001-hostA: ok");
    expect(result.stdout).toContain("log-000000003-hostA: ok");
    const dump = await runMars(["log", "dump", "--json", join(directory, "log-000000002-hostA")]);
    expect(dump.exitCode).toBe(0);
    expect(JSON.parse(dump.stdout).records.length).toBeGreaterThan(0);
  });

  test("a byte flipped by dd in the middle of a logfile exits 7 naming file and offset",
    async () => {
      const path = join(directory, "log-000000002-hostA");
      flipByteWithDd(path, 5000);
      const result = await runMars(["log", "verify", directory]);
      expect(result.exitCode).toBe(7);
      // The record holding byte 5000 starts at 4432 (256-byte header, 4176-byte records).
      expect(result.stderr).toContain(`${path}: offset 4432: payload checksum mismatch`);
      const single = await runMars(["log", "verify", path]);
      expect(single.exitCode).toBe(7);
    });

  test("usage errors exit 2, a missing path exits 1, a file that is no logfile exits 7",
    async () => {
      expect((await runMars(["log", "verify"])).exitCode).toBe(2);
      expect((await runMars(["log"])).exitCode).toBe(2);
      expect((await runMars(["log", "verify", join(directory, "missing")])).exitCode).toBe(1);
      writeFileSync(join(directory, "not-a-log"), "hello, not a logfile\n");
      const notLog = await runMars(["log", "dump", join(directory, "not-a-log")]);
      expect(notLog.exitCode).toBe(7);
      expect(notLog.stderr).toContain("offset 0: ");
    });
});
