/** Free-space levels of a home and who enters emergency mode when it runs full (pure). */
import { assert } from "../lib/assert.ts";

/**
 * Escalating reactions as free space falls: each level includes the ones before it.
 * warn: log it; trim: secondaries delete logfiles they replayed; stop-fetch: secondaries stop
 * copying logfiles; emergency: the primary stops logging the resources with the largest backlog.
 */
export const spaceLevels = ["ok", "warn", "trim", "stop-fetch", "emergency"] as const;
export type SpaceLevel = (typeof spaceLevels)[number];

/** Free-space floors as fractions of the file system, each level's entry point. */
export interface SpaceThresholds {
  readonly warnFreeFraction: number;
  readonly trimFreeFraction: number;
  readonly stopFetchFreeFraction: number;
  readonly emergencyFreeFraction: number;
  /** A level is left only once free space is this much (fraction) above its floor. */
  readonly hysteresisFraction: number;
}

/** Defaults (docs/log-lifetime.md). */
export const defaultSpaceThresholds: SpaceThresholds = {
  warnFreeFraction: 0.2,
  trimFreeFraction: 0.1,
  stopFetchFreeFraction: 0.05,
  emergencyFreeFraction: 0.02,
  hysteresisFraction: 0.01,
};

export function checkThresholds(thresholds: SpaceThresholds): void {
  const { warnFreeFraction, trimFreeFraction, stopFetchFreeFraction } = thresholds;
  assert(warnFreeFraction <= 1 && warnFreeFraction >= trimFreeFraction &&
    trimFreeFraction >= stopFetchFreeFraction &&
    stopFetchFreeFraction >= thresholds.emergencyFreeFraction &&
    thresholds.emergencyFreeFraction >= 0, "space thresholds descend from warn to emergency");
  assert(thresholds.hysteresisFraction >= 0 && thresholds.hysteresisFraction < 1,
    "hysteresis is a fraction");
}

function floorOf(level: SpaceLevel, thresholds: SpaceThresholds): number {
  switch (level) {
    case "ok": return Infinity;
    case "warn": return thresholds.warnFreeFraction;
    case "trim": return thresholds.trimFreeFraction;
    case "stop-fetch": return thresholds.stopFetchFreeFraction;
    case "emergency": return thresholds.emergencyFreeFraction;
  }
}

export function levelRank(level: SpaceLevel): number {
  return spaceLevels.indexOf(level);
}

/** The level for `freeBytes` of `totalBytes`, sticky by the hysteresis when falling back. */
export function spaceLevel(
  freeBytes: number, totalBytes: number, previous: SpaceLevel,
  thresholds: SpaceThresholds = defaultSpaceThresholds,
): SpaceLevel {
  checkThresholds(thresholds);
  assert(freeBytes >= 0 && totalBytes >= 0, "space is counted in non-negative bytes");
  const freeFraction = totalBytes === 0 ? 0 : freeBytes / totalBytes;
  let reached: SpaceLevel = "ok";
  for (const level of spaceLevels) {
    if (level !== "ok" && freeFraction < floorOf(level, thresholds)) reached = level;
  }
  if (levelRank(reached) >= levelRank(previous)) return reached;
  // Recovering: step down only past each floor plus the hysteresis.
  let kept: SpaceLevel = reached;
  for (const level of spaceLevels) {
    if (level === "ok" || levelRank(level) > levelRank(previous)) continue;
    if (freeFraction < floorOf(level, thresholds) + thresholds.hysteresisFraction) kept = level;
  }
  return levelRank(kept) > levelRank(reached) ? kept : reached;
}

export interface BacklogFact {
  readonly resource: string;
  /** Log bytes this home holds for the resource that some member has not replayed. */
  readonly backlogBytes: number;
}

/**
 * Resources to put into emergency mode: largest backlog first, until dropping their logs would
 * lift free space to the emergency floor plus hysteresis; at least one when any has a backlog.
 */
export function chooseEmergency(
  backlogs: readonly BacklogFact[], freeBytes: number, totalBytes: number,
  thresholds: SpaceThresholds = defaultSpaceThresholds,
): string[] {
  const wantedFreeBytes =
    totalBytes * (thresholds.emergencyFreeFraction + thresholds.hysteresisFraction);
  const ordered = backlogs.filter((fact) => fact.backlogBytes > 0)
    .sort((left, right) => right.backlogBytes - left.backlogBytes ||
      (left.resource < right.resource ? -1 : 1));
  const chosen: string[] = [];
  let freedBytes = 0;
  for (const fact of ordered) {
    if (chosen.length > 0 && freeBytes + freedBytes >= wantedFreeBytes) break;
    chosen.push(fact.resource);
    freedBytes += fact.backlogBytes;
  }
  return chosen;
}
