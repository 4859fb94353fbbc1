// The key schema: valid names, which keys exist, and who may write each.
import { expect, test } from "bun:test";
import { keys, nameProblem, parseKey, writerMayWrite } from "../../../src/cluster/keys.ts";
import { compareStamps, LamportClock } from "../../../src/cluster/lamport.ts";

test("host and resource names follow marsadm's rule and avoid reserved words", () => {
  expect(nameProblem("db-1")).toBeUndefined();
  expect(nameProblem("Db")).toContain("must match");
  expect(nameProblem("1db")).toContain("must match");
  expect(nameProblem("all")).toBe("is reserved");
  expect(nameProblem("")).toBe("is empty");
  expect(nameProblem("a".repeat(64))).toContain("longer");
});

test("owned keys are writable only by their owner, global keys by anyone", () => {
  expect(writerMayWrite(keys.actual("r1", "alpha"), "alpha")).toBe(true);
  expect(writerMayWrite(keys.actual("r1", "alpha"), "beta")).toBe(false);
  expect(writerMayWrite(keys.resourceMember("r1", "alpha"), "beta")).toBe(false);
  expect(writerMayWrite(keys.caughtUp("alpha"), "beta")).toBe(false);
  expect(writerMayWrite(keys.todo("r1", "alpha", "sync"), "beta")).toBe(true);
  expect(writerMayWrite(keys.primary("r1"), "beta")).toBe(true);
  expect(writerMayWrite("resource/r1/../../etc", "beta")).toBe(false);
  expect(writerMayWrite("resource/r1/todo/alpha/format-disk", "beta")).toBe(false);
  expect(parseKey("user/a/b")).toEqual({ kind: "user" });
});

test("Lamport stamps order by time, then host; the clock never goes back", () => {
  let wall = 100;
  const clock = new LamportClock(() => wall);
  expect(clock.tick()).toBe(100);
  expect(clock.tick()).toBe(101);
  wall = 50;
  expect(clock.tick()).toBe(102);
  clock.observe(500);
  expect(clock.tick()).toBe(501);
  expect(compareStamps({ time: 5, host: "b" }, { time: 5, host: "a" })).toBeGreaterThan(0);
  expect(compareStamps({ time: 4, host: "b" }, { time: 5, host: "a" })).toBeLessThan(0);
});
