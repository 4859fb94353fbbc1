/** Facts about this machine the CLI needs: its host name, absolute paths. */
import * as os from "node:os";
import { resolve } from "node:path";

export function hostname(): string {
  return os.hostname();
}

/** `path` made absolute against the working directory (disks are recorded absolute). */
export function absolutePath(path: string): string {
  return resolve(path);
}
