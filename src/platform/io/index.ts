/** Chooses the IoEngine: io_uring when the kernel allows it, else the portable engine, and why. */
import { readFileSync } from "node:fs";
import { MarsError } from "../../lib/errors.ts";
import type { IoEngine } from "../types.ts";
import { createPortableEngine } from "./portable.ts";
import type { IoEngineName, IoEngineRequest } from "./request.ts";
import { UringEngine } from "./uring.ts";

export { allocateAlignedBuffer, AlignedBufferPool, isAlignedBuffer, pageBytes } from "./aligned.ts";

export { parseIoEngineRequest, type IoEngineName, type IoEngineRequest } from "./request.ts";

export interface IoEngineChoice {
  readonly engine: IoEngine;
  /** Why this engine was chosen (shown by `mars --version --verbose`). */
  readonly reason: string;
}

/** Opens a uring engine or says why it cannot; tests replace it to simulate old kernels. */
export type UringOpener = () => IoEngine | { readonly name: string; readonly message: string };

const disabledSettingPath = "/proc/sys/kernel/io_uring_disabled";

/** Explains why io_uring is off by sysctl, or undefined when the kernel may allow it. */
function disabledBySetting(): string | undefined {
  let value: string;
  try {
    value = readFileSync(disabledSettingPath, "utf8").trim();
  } catch {
    return undefined; // older kernels have no such switch
  }
  return value === "2" ? `kernel.io_uring_disabled=2 forbids io_uring` : undefined;
}

function openUring(): IoEngine | { name: string; message: string } {
  const forbidden = disabledBySetting();
  if (forbidden !== undefined) return { name: "EPERM", message: forbidden };
  return UringEngine.open();
}

/**
 * `requested` comes from --io-engine or MARS_IO_ENGINE; undefined means automatic. An explicit
 * request for io_uring that the kernel refuses is an error; the automatic choice falls back.
 */
export function openIoEngine(
  requested?: IoEngineName | IoEngineRequest,
  opener: UringOpener = openUring,
): IoEngineChoice {
  const request = typeof requested === "string" ? { name: requested, source: "caller" } : requested;
  if (request?.name === "portable") {
    return { engine: createPortableEngine(), reason: `requested by ${request.source}` };
  }
  const uring = opener();
  if ("submit" in uring) {
    const why = request ? `requested by ${request.source}` : "io_uring is available";
    return { engine: uring, reason: why };
  }
  const refusal = `io_uring unavailable (${uring.name}: ${uring.message})`;
  if (request) {
    throw new MarsError("engine", `${request.source} uring: ${refusal}`, {
      details: { errno: uring.name },
    });
  }
  return { engine: createPortableEngine(), reason: `fell back: ${refusal}` };
}
