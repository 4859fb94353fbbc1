/** Facts about the running platform for `mars --version --verbose` and bug reports. */
import * as os from "node:os";
import { openIoEngine } from "./io/index.ts";

export async function platformFacts(): Promise<Record<string, string>> {
  const choice = openIoEngine(ioEngineRequest());
  await choice.engine.close();
  return {
    "runtime": `bun ${Bun.version} (${Bun.revision.slice(0, 9)})`,
    "kernel": `${os.type()} ${os.release()} ${os.arch()}`,
    "cpus": String(os.cpus().length),
    "io engine": `${choice.engine.name}: ${choice.reason}`,
  };
}

/** MARS_IO_ENGINE selects the engine; anything else is automatic. */
export function ioEngineRequest(): "uring" | "portable" | undefined {
  const value = process.env.MARS_IO_ENGINE;
  return value === "uring" || value === "portable" ? value : undefined;
}
