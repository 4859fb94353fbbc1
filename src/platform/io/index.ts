/** Chooses the IoEngine: io_uring when the kernel allows it, else the portable engine. */
import type { IoEngine } from "../types.ts";
import { createPortableEngine } from "./portable.ts";

export type IoEngineName = "uring" | "portable";

export interface IoEngineChoice {
  readonly engine: IoEngine;
  /** Why this engine was chosen (shown by `mars --version --verbose`). */
  readonly reason: string;
}

/** `requested` comes from --io-engine or MARS_IO_ENGINE; undefined means automatic. */
export function openIoEngine(requested?: IoEngineName): IoEngineChoice {
  if (requested === "uring") throw new Error("the io_uring engine is not built yet");
  return { engine: createPortableEngine(), reason: "portable engine (io_uring not built yet)" };
}
