/** Drives a translog on the simulated disk step by step, for property tests and simulations. */
import { openFileDevice } from "../../src/block/file.ts";
import type { Codec } from "../../src/log/format.ts";
import type { Random } from "../../src/platform/types.ts";
import {
  openTranslog, type Translog, type TranslogLimits,
} from "../../src/translog/translog.ts";
import { SimulatedClock } from "./simulated-clock.ts";
import { SimulatedStorage } from "./simulated-storage.ts";

/** Scheduler turns a stuck run may take before the harness calls it a deadlock. */
export const idleTurnsMax = 2000;

export const harnessDirectory = "/home/r1";
export const logDirectory = `${harnessDirectory}/log`;
export const diskPath = `${harnessDirectory}/disk`;

/** Lets every queued microtask and callback run. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A machine: the simulated disk and clock one boot of the engine sees. */
export interface Machine {
  storage: SimulatedStorage;
  clock: SimulatedClock;
  readonly random: Random;
}

/** A fresh machine with a durable, zeroed backing disk file of `sizeBytes`. */
export async function newMachine(random: Random, sizeBytes: number): Promise<Machine> {
  const storage = new SimulatedStorage(random, false);
  await storage.files.makeDirectory(harnessDirectory);
  const fd = await storage.files.open(diskPath, { create: true });
  await storage.files.truncate(fd, sizeBytes);
  await storage.io.submit([{ kind: "fsync", fd, dataOnly: false }]);
  await storage.files.close(fd);
  await storage.files.syncDirectory(harnessDirectory);
  return { storage: storage.withManualIo(), clock: new SimulatedClock(), random };
}

/** Runs the simulated I/O (in random order) and time until `promise` settles. */
export async function runUntil<T>(machine: Machine, promise: Promise<T>): Promise<T> {
  let settled = false;
  const tracked = promise.finally(() => {
    settled = true;
  });
  tracked.catch(() => {});
  for (let idle = 0; !settled; idle++) {
    await settle();
    if (settled) break;
    if (machine.storage.step()) idle = 0;
    else machine.clock.advance(1);
    if (idle > idleTurnsMax) throw new Error("simulation deadlock: nothing left to run");
  }
  return tracked;
}

/** Runs at most `steps` simulated I/O operations (and their callbacks), then stops. */
export async function runSteps(machine: Machine, promise: Promise<unknown>, steps: number) {
  let settled = false;
  promise.then(() => { settled = true; }, () => { settled = true; });
  for (let step = 0; step < steps && !settled; step++) {
    await settle();
    if (!machine.storage.step()) machine.clock.advance(1);
  }
  await settle();
  return settled;
}

/** Lets background work (writeback, persists, batch timers) advance for a while. */
export async function progress(machine: Machine, steps: number, advanceMs: number) {
  for (let step = 0; step < steps; step++) {
    await settle();
    machine.storage.step();
  }
  machine.clock.advance(advanceMs);
  await settle();
}

/** Opens (and so recovers) the translog of the harness resource on `machine`. */
export function openHarnessTranslog(
  machine: Machine, limits: Partial<TranslogLimits> = {}, codec: Codec = "none",
): Promise<Translog> {
  return runUntil(machine, startHarnessTranslog(machine, limits, codec));
}

/** Starts opening (recovering) without driving the simulation: the caller decides how far. */
export async function startHarnessTranslog(
  machine: Machine, limits: Partial<TranslogLimits> = {}, codec: Codec = "none",
): Promise<Translog> {
  return openTranslog({
    storage: machine.storage, clock: machine.clock, directory: logDirectory, resource: "r1",
    host: "hostA", backing: await openFileDevice(machine.storage, diskPath), limits, codec,
  });
}

/** The power fails: returns the rebooted machine (new clock; the old code is frozen). */
export function crash(machine: Machine): Machine {
  return {
    storage: machine.storage.crash(), clock: new SimulatedClock(), random: machine.random,
  };
}
