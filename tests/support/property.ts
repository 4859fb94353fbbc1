/** fast-check settings for every property test: seed printed, FC_SEED replays, FC_RUNS deepens. */
import fc from "fast-check";

/**
 * Parameters for fc.assert. The seed is always printed, so a failing CI run can be replayed
 * with FC_SEED=<seed> (and FC_RUNS=<n> to run deeper).
 */
export function propertyParameters<T>(name: string, defaultRuns: number): fc.Parameters<T> {
  const seedText = process.env.FC_SEED;
  const freshSeed = (Date.now() ^ (Math.random() * 2 ** 31)) | 0;
  const seed = seedText !== undefined ? Number(seedText) : freshSeed;
  const numRuns = process.env.FC_RUNS !== undefined ? Number(process.env.FC_RUNS) : defaultRuns;
  console.error(`property "${name}": seed=${seed} runs=${numRuns} (replay: FC_SEED=${seed})`);
  return { seed, numRuns, endOnFailure: false, verbose: fc.VerbosityLevel.Verbose };
}
