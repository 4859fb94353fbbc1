/** The real effects every command and the engine run with, wired once for the CLI. */
import { systemClock } from "../platform/clock.ts";
import { systemFiles } from "../platform/files.ts";
import { ioEngineRequest } from "../platform/facts.ts";
import { openIoEngine } from "../platform/io/index.ts";
import { systemLocks } from "../platform/lock.ts";
import { bunNetwork } from "../platform/network.ts";
import { systemRandom } from "../platform/random.ts";
import type { EngineEffects } from "../engine/engine.ts";

let effects: EngineEffects | undefined;

export function realEffects(): EngineEffects {
  effects ??= {
    clock: systemClock, random: systemRandom, network: bunNetwork, locks: systemLocks,
    storage: { files: systemFiles, io: openIoEngine(ioEngineRequest()).engine },
  };
  return effects;
}
