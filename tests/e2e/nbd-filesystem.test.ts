/** A real ext4 on mars: nbdfuse → loop device → mkfs, mount, write, umount, fsck, read back. */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { runTool, sha256OfFile, startServer } from "../support/nbd-serve.ts";

const canMount = process.getuid?.() === 0 && existsSync("/dev/fuse") &&
  existsSync("/dev/loop-control");

describe("a filesystem on mars serve", () => {
  test.skipIf(!canMount)("ext4 through nbdfuse and a loop device stays clean", async () => {
    const server = await startServer(["--size", "256M"], { diskInDirectory: true });
    const fuseDirectory = join(server.directory, "fuse");
    const fuseFile = join(fuseDirectory, "nbd");
    const mountPoint = join(server.directory, "mnt");
    mkdirSync(fuseDirectory);
    mkdirSync(mountPoint);
    const fuse = Bun.spawn(["nbdfuse", fuseFile, "--unix", server.socketPath],
      { stdout: "ignore", stderr: "pipe" });
    let loop = "";
    let mounted = false;
    try {
      // Wait for the FUSE mount itself: a missing mount would let mkfs write a plain file.
      for (let attempt = 0; attempt < 100; attempt++) {
        if ((await runTool(["mountpoint", "-q", fuseDirectory])).exitCode === 0) break;
        await Bun.sleep(50);
      }
      expect((await runTool(["mountpoint", "-q", fuseDirectory])).exitCode).toBe(0);
      const attached = await runTool(["losetup", "-f", "--show", fuseFile]);
      expect(attached.exitCode).toBe(0);
      loop = attached.stdout.trim();
      const made = await runTool(["mkfs.ext4", "-q", "-F", "-E", "nodiscard", loop]);
      expect(made.stderr).toBe("");
      expect((await runTool(["mount", loop, mountPoint])).exitCode).toBe(0);
      mounted = true;
      const file = join(mountPoint, "random.bin");
      const wrote = await runTool(["dd", "if=/dev/urandom", `of=${file}`, "bs=1M", "count=48",
        "conv=fsync", "status=none"]);
      expect(wrote.exitCode).toBe(0);
      const written = await sha256OfFile(file);
      expect((await runTool(["umount", mountPoint])).exitCode).toBe(0);
      mounted = false;
      const checked = await runTool(["fsck.ext4", "-n", "-f", loop]);
      expect(checked.exitCode).toBe(0);
      expect((await runTool(["mount", "-o", "ro", loop, mountPoint])).exitCode).toBe(0);
      mounted = true;
      expect(await sha256OfFile(file)).toBe(written);
    } finally {
      if (mounted) await runTool(["umount", mountPoint]);
      if (loop) await runTool(["losetup", "-d", loop]);
      await runTool(["fusermount3", "-u", fuseDirectory]);
      fuse.kill();
      await fuse.exited;
      expect(await server.stop()).toBe(0);
      server.cleanup();
    }
  }, 120_000);
});
