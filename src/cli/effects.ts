/** The real effects every command and the engine run with, wired once for the CLI. */
import { systemClock } from "../platform/clock.ts";
import { systemFiles } from "../platform/files.ts";
import { ioEngineRequest } from "../platform/facts.ts";
import { openIoEngine, type IoEngineRequest } from "../platform/io/index.ts";
import { systemLocks } from "../platform/lock.ts";
import { bunNetwork } from "../platform/network.ts";
import { systemRandom } from "../platform/random.ts";
import type { EngineEffects } from "../engine/engine.ts";

let effects: EngineEffects | undefined;

/**
 * The process-wide effects. The first call chooses the io engine: pass the command's
 * `--io-engine` choice there (undefined falls back to MARS_IO_ENGINE, then automatic).
 */
export function realEffects(ioEngine?: IoEngineRequest): EngineEffects {
  effects ??= {
    clock: systemClock, random: systemRandom, network: bunNetwork, locks: systemLocks,
    storage: {
      files: systemFiles, io: openIoEngine(ioEngine ?? ioEngineRequest()).engine,
    },
  };
  return effects;
}
