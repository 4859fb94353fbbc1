/** Where join-cluster gets the cluster secret: a file or the environment, never argv. */
import { MarsError } from "../lib/errors.ts";
import { readFileBytes } from "../store/atomic-file.ts";
import { realEffects } from "./effects.ts";

export const secretEnvironmentName = "MARS_CLUSTER_SECRET";

export async function readSecretSource(file: unknown): Promise<string> {
  if (typeof file === "string") {
    const bytes = await readFileBytes(realEffects().storage, file);
    if (!bytes) throw new MarsError("not-found", `secret file ${file} does not exist`);
    return new TextDecoder().decode(bytes);
  }
  const fromEnvironment = process.env[secretEnvironmentName];
  if (fromEnvironment) return fromEnvironment;
  throw new MarsError("usage",
    `give the cluster secret with --secret-file FILE or env ${secretEnvironmentName}`);
}
