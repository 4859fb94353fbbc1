// The home: crash-safe writes, the secret file, the lock, and paths a peer may name.
import { expect, test } from "bun:test";
import { existsSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { systemFiles } from "../../../src/platform/files.ts";
import { openIoEngine } from "../../../src/platform/io/index.ts";
import { systemLocks } from "../../../src/platform/lock.ts";
import { readFileBytes, writeFileAtomic } from "../../../src/store/atomic-file.ts";
import {
  confinedPath, formatSecret, Home, parseSecret,
} from "../../../src/store/home.ts";
import { temporaryDirectory } from "../../support/binary.ts";

const storage = { files: systemFiles, io: openIoEngine("portable").engine };

test("an atomic write replaces the file and leaves no temporary behind", async () => {
  const directory = temporaryDirectory();
  const path = join(directory, "state");
  await writeFileAtomic(storage, path, new TextEncoder().encode("first"));
  await writeFileAtomic(storage, path, new TextEncoder().encode("second, longer"));
  await writeFileAtomic(storage, path, new TextEncoder().encode("3"));
  expect(new TextDecoder().decode(await readFileBytes(storage, path))).toBe("3");
  expect(readdirSync(directory)).toEqual(["state"]);
  expect(statSync(path).mode & 0o777).toBe(0o600);
  expect(await readFileBytes(storage, join(directory, "missing"))).toBeUndefined();
});

test("the secret file round-trips and rejects anything else", () => {
  const secret = new Uint8Array(32).map((_, index) => index);
  const parsed = parseSecret(formatSecret("c-1", secret));
  expect(parsed.cluster).toBe("c-1");
  expect(parsed.secret).toEqual(secret);
  expect(() => parseSecret("hello")).toThrow("not a mars cluster secret");
  expect(() => parseSecret("mars-cluster-secret 1 c-1 abcd")).toThrow();
});

test("paths a peer names stay inside the home", () => {
  expect(confinedPath("/home", "resources/r1/log-1")).toBe("/home/resources/r1/log-1");
  for (const bad of ["../etc/passwd", "/etc/passwd", "a/../../b", "", "a//b", "./a"]) {
    expect(() => confinedPath("/home", bad)).toThrow("not inside the home");
  }
});

test("one holder of the home lock at a time; an uninitialised home is named", async () => {
  const path = join(temporaryDirectory(), "home");
  const home = new Home(path, storage, systemLocks);
  await expect(home.readIdentity()).rejects.toThrow("not a mars home");
  await home.prepare();
  expect(existsSync(join(path, "resources"))).toBe(true);
  const first = await home.tryLock();
  expect(first).toBeDefined();
  expect(await home.tryLock()).toBeUndefined();
  await first!.release();
  const again = await home.tryLock();
  expect(again).toBeDefined();
  await again!.release();
});

test("a resource directory goes aside under deleted/, never over an earlier one", async () => {
  const path = temporaryDirectory();
  const home = new Home(path, storage, systemLocks);
  await home.prepare();
  expect(await home.setAsideResource("r1", 0)).toBeUndefined();
  const aside: string[] = [];
  for (const content of ["old", "older"]) {
    const directory = home.resourceDirectory("r1");
    await storage.files.makeDirectory(directory);
    await writeFileAtomic(storage, join(directory, "log-000000001-a"), new TextEncoder()
      .encode(content));
    aside.push((await home.setAsideResource("r1", Date.UTC(2026, 10, 26, 13, 0, 0, 5)))!);
    expect(existsSync(directory)).toBe(false);
  }
  expect(aside).toEqual([join(path, "deleted", "r1-2026-11-26T13-00-00-005Z"),
    join(path, "deleted", "r1-2026-11-26T13-00-00-005Z-2")]);
  const kept = await readFileBytes(storage, join(aside[0]!, "log-000000001-a"));
  expect(new TextDecoder().decode(kept)).toBe("old");
  expect(statSync(join(path, "deleted")).mode & 0o777).toBe(0o700);
});
