/** `mars demo`: a self-contained three-host cluster on this machine, showing what mars does. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { runDemo } from "../demo/scenario.ts";

export default defineCommand({
  meta: {
    name: "demo",
    description: "Run a three-host cluster on this machine (loopback, sparse files, NBD " +
      "sockets): replication, lag, verified equal disks; cleans up after itself",
  },
  args: {
    "keep": { type: "boolean", description: "Keep the scratch directory for inspection" },
    "size-mib": { type: "string", valueHint: "MIB", description: "Disk size (default 64)" },
    "write-mib": { type: "string", valueHint: "MIB", description: "Data written (default 16)" },
  },
  async run({ args }) {
    const sizeMib = mebibytes(args["size-mib"], 64, "--size-mib");
    const writeMib = mebibytes(args["write-mib"], 16, "--write-mib");
    await runDemo({
      sizeBytes: sizeMib * 1024 * 1024,
      writeBytes: writeMib * 1024 * 1024,
      keep: args.keep === true,
      print: (line) => console.log(line),
    });
  },
});

function mebibytes(text: string | undefined, fallback: number, option: string): number {
  if (text === undefined) return fallback;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 1 || value > 64 * 1024) {
    throw new MarsError("usage", `${option} takes a whole number of MiB (1 to 65536)`);
  }
  return value;
}
