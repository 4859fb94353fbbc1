/** Facts about the running platform for `mars --version --verbose` and bug reports. */
import * as os from "node:os";
import { isMarsError } from "../lib/errors.ts";
import { openIoEngine } from "./io/index.ts";
import { parseIoEngineRequest, type IoEngineRequest } from "./io/request.ts";

/** `request` is the resolved --io-engine / MARS_IO_ENGINE choice; default: the environment. */
export async function platformFacts(
  request: IoEngineRequest | undefined = ioEngineRequest(),
): Promise<Record<string, string>> {
  return {
    "runtime": `bun ${Bun.version} (${Bun.revision.slice(0, 9)})`,
    "kernel": `${os.type()} ${os.release()} ${os.arch()}`,
    "cpus": String(os.cpus().length),
    "io engine": await describeIoEngine(request),
  };
}

async function describeIoEngine(request: IoEngineRequest | undefined): Promise<string> {
  try {
    const choice = openIoEngine(request);
    await choice.engine.close();
    return `${choice.engine.name}: ${choice.reason}`;
  } catch (error) {
    if (!isMarsError(error)) throw error;
    return `none: ${error.message}`;
  }
}

/** MARS_IO_ENGINE selects the engine; unset means automatic. */
export function ioEngineRequest(): IoEngineRequest | undefined {
  return parseIoEngineRequest(process.env.MARS_IO_ENGINE, "MARS_IO_ENGINE");
}
