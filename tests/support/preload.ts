/** Test preload: the binary's environment for cbor-x, and no temporary homes left behind. */
import "../../src/platform/cbor-environment.ts";
import { afterAll } from "bun:test";
import { removeTemporaryDirectories } from "./binary.ts";
import { stopAllEngines } from "./engines.ts";

afterAll(async () => {
  await stopAllEngines();
  removeTemporaryDirectories();
});
