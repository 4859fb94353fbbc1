/** Unix socket paths: clearing one left behind by a crashed server, removing ours at exit. */
import * as fs from "node:fs";
import * as net from "node:net";
import { dirname } from "node:path";
import { MarsError } from "../lib/errors.ts";

/**
 * Removes `path` when it is a socket nobody listens on (a crashed server's leftover).
 * A live socket or any other kind of file is left alone and reported.
 */
export async function clearStaleUnixSocket(path: string): Promise<void> {
  let status: fs.Stats;
  try {
    status = fs.lstatSync(path);
  } catch {
    return;
  }
  if (!status.isSocket()) throw new MarsError("usage", `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const probe = net.createConnection({ path });
    probe.once("connect", () => {
      probe.destroy();
      resolve(true);
    });
    probe.once("error", () => resolve(false));
  });
  if (live) throw new MarsError("refused", `${path}: another server is listening there`);
  fs.rmSync(path, { force: true });
}

/** Creates the socket's directory (0755) when it is missing. */
export async function ensureSocketDirectory(path: string): Promise<void> {
  const directory = dirname(path);
  try {
    await fs.promises.mkdir(directory, { recursive: true, mode: 0o755 });
  } catch (error) {
    throw new MarsError("io", `cannot create ${directory} for ${path}: ${String(error)}`);
  }
}

export function removeUnixSocket(path: string): void {
  fs.rmSync(path, { force: true });
}
