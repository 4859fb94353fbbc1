/** `mars demo` as a newcomer runs it: it must finish, verify equal replicas and leave no trace. */
import { expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { runMars } from "../support/binary.ts";

test("mars demo builds a three-host cluster, verifies equal disks and cleans up", async () => {
  const before = new Set(readdirSync(tmpdir()).filter((name) => name.startsWith("mars-demo-")));
  const result = await runMars(["demo"], { timeoutMs: 90_000 });
  expect(result.stderr).toBe("");
  expect(result.exitCode).toBe(0);
  expect(result.stdout).toContain("every replica equals the primary");
  for (const step of ["cluster", "resource", "write", "sync", "verify", "handover", "failover",
    "detect", "repair", "equal"]) {
    expect(result.stdout).toMatch(new RegExp(`^ *\\d+\\. ${step} `, "m"));
  }
  // The failover's story is an unfetched tail: the new primary names a lost tail of some bytes.
  const lost = /not fetched of .*?: (\d+) bytes/.exec(result.stdout)?.[1];
  expect(Number(lost)).toBeGreaterThan(0);
  const left = readdirSync(tmpdir()).filter((name) =>
    name.startsWith("mars-demo-") && !before.has(name));
  expect(left).toEqual([]);
}, 120_000);
