/** `mars serve`: standalone mode, one disk exported over NBD (socket, TCP, and /dev/nbdN). */
import { defineCommand } from "citty";
import { openFileDevice } from "../../block/file.ts";
import { createMemoryDevice } from "../../block/memory.ts";
import type { BlockDevice } from "../../block/types.ts";
import { MarsError } from "../../lib/errors.ts";
import { isLogName } from "../../log/format.ts";
import { NbdServer } from "../../nbd/server.ts";
import { systemFiles } from "../../platform/files.ts";
import { openIoEngine } from "../../platform/io/index.ts";
import { bunNetwork } from "../../platform/network.ts";
import { createPayloadPool } from "../../platform/payload-pool.ts";
import { systemClock } from "../../platform/clock.ts";
import { hostname } from "../../platform/host-name.ts";
import type { Address, IoEngine, Listener } from "../../platform/types.ts";
import { openTranslog } from "../../translog/translog.ts";
import {
  clearStaleUnixSocket, ensureSocketDirectory, removeUnixSocket,
} from "../../platform/unix-socket.ts";
import { globalOptions } from "../global-args.ts";
import {
  attachKernelExport, kernelRequestTimeoutSeconds, type KernelExport,
} from "./serve-kernel.ts";

/** Where the default unix socket goes: /run/mars/NAME.sock. */
export const defaultSocketDirectory = "/run/mars";

const summary = "Export one disk over NBD: unix socket, TCP, kernel /dev/nbdN (standalone mode)";

export default defineCommand({
  meta: { name: "serve", description: summary },
  args: {
    disk: { type: "string", valueHint: "FILE", description: "Backing file or block device" },
    "log-dir": {
      type: "string", valueHint: "DIR", description: "Log writes through the translog here",
    },
    unix: {
      type: "string", valueHint: "SOCK",
      description: "Listen on this unix socket (default without --tcp/--nbd-device: " +
        "/run/mars/NAME.sock)",
    },
    tcp: {
      type: "string", valueHint: "HOST:PORT",
      description: "Also listen on TCP (HOST defaults to 127.0.0.1; PORT 0 picks one)",
    },
    "nbd-device": {
      type: "string", valueHint: "N|auto",
      description: "Attach the kernel driver: /dev/nbdN, or 'auto' for a free one",
    },
    size: {
      type: "string", valueHint: "BYTES",
      description: "Create --disk with this size if missing; without --disk, a memory disk",
    },
    name: {
      type: "string", valueHint: "NAME",
      description: "Export name, and /dev/mars/NAME for the kernel device (default: disk)",
    },
    host: {
      type: "string", valueHint: "NAME",
      description: "Origin host named in the logfiles (--log-dir; default: this host's name)",
    },
    "request-timeout": {
      type: "string", valueHint: "SECONDS",
      description: "Kernel drops a connection whose reply takes this long; mars re-attaches " +
        `(default ${kernelRequestTimeoutSeconds})`,
    },
    "dead-timeout": {
      type: "string", valueHint: "SECONDS",
      description: "Kernel holds I/O this long for a restarted server (default 120)",
    },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const say = (line: string) => process.stdout.write(`${line}\n`);
    const warn = (line: string) => process.stderr.write(`mars serve: ${line}\n`);
    const name = typeof args.name === "string" && args.name !== "" ? args.name : "disk";
    if (!isLogName(name)) {
      throw new MarsError("usage", `--name '${name}': up to 63 letters, digits, '.', '_', '-'`);
    }
    const host = originHost(stringArg(args.host));
    const tcp = stringArg(args.tcp);
    const nbdDevice = args["nbd-device"] === undefined ? undefined : String(args["nbd-device"]);
    // The unix socket is the default export when nothing else was asked for.
    const unixPath = stringArg(args.unix) ??
      (!tcp && nbdDevice === undefined ? `${defaultSocketDirectory}/${name}.sock` : undefined);
    const logDirectory = stringArg(args["log-dir"]);
    if (logDirectory && !stringArg(args.disk)) {
      throw new MarsError("usage", "--log-dir logs writes for a --disk; give both");
    }
    const kernelIndex = parseDeviceIndex(nbdDevice);
    const tcpAddress = tcp ? parseTcpAddress(tcp) : undefined;
    const deadTimeoutSeconds = parseCount(args["dead-timeout"], "--dead-timeout", 120);
    const requestTimeoutSeconds = parseCount(args["request-timeout"], "--request-timeout",
      kernelRequestTimeoutSeconds);

    const ioChoice = openIoEngine(options.ioEngine);
    const io = ioChoice.engine;
    if (options.verbose) warn(`io engine ${io.name}: ${ioChoice.reason}`);
    // Under a log the disk only receives writeback: aligned writes skip the page cache.
    let device = await openDevice(io, stringArg(args.disk), stringArg(args.size),
      logDirectory !== undefined);
    if (logDirectory) device = await throughTranslog(io, device, logDirectory, name, host);
    const buffers = createPayloadPool();
    const server = new NbdServer({
      exports: [{ name, description: describeDisk(args.disk), device }],
      log: options.verbose ? warn : undefined,
      buffers,
    });
    const listeners: Listener[] = [];
    let kernel: KernelExport | undefined;
    const stopped = waitForStopSignal();
    try {
      if (unixPath) {
        await ensureSocketDirectory(unixPath);
        await clearStaleUnixSocket(unixPath);
        listeners.push(await bunNetwork.listen({ kind: "unix", path: unixPath }, server.accept));
        say(`listening unix:${unixPath}`);
      }
      if (tcpAddress) {
        const listener = await bunNetwork.listen(tcpAddress, server.accept);
        listeners.push(listener);
        const bound = listener.address as Extract<Address, { kind: "tcp" }>;
        say(`listening tcp:${bound.host}:${bound.port}`);
      }
      if (nbdDevice !== undefined) {
        try {
          kernel = await attachKernelExport(server, {
            name, requested: kernelIndex, requestTimeoutSeconds, deadTimeoutSeconds, warn,
          });
          const again = kernel.reattached ? " (re-attached)" : "";
          say(`attached ${kernel.devicePath} as ${kernel.stableName}${again}`);
        } catch (error) {
          // Without the driver the socket exports still serve; alone, it is a failure.
          if (listeners.length === 0 || !(error instanceof MarsError)) throw error;
          warn(`${error.message}; serving the sockets only`);
        }
      }
      const logged = logDirectory ? `, writes logged in ${logDirectory}` : "";
      say(`ready: ${device.sizeBytes} bytes from ${describeDisk(args.disk)}${logged}`);
      const signal = await stopped;
      say(`stopping (${signal})`);
    } finally {
      for (const listener of listeners) listener.close();
      kernel?.detach(warn);
      await server.shutdown().catch((error) => warn(`final flush failed: ${error}`));
      await device.close();
      await io.close();
      buffers.close();
      if (unixPath) removeUnixSocket(unixPath);
    }
    say("stopped");
  },
});

/** --host, else this machine's name when it is usable in logfile names, else "standalone". */
function originHost(given: string | undefined): string {
  if (given !== undefined) {
    if (!isLogName(given)) throw new MarsError("usage", `--host '${given}' is not a valid name`);
    return given;
  }
  const machine = hostname();
  return isLogName(machine) ? machine : "standalone";
}

function stringArg(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

function describeDisk(disk: unknown): string {
  return typeof disk === "string" && disk !== "" ? disk : "memory";
}

/** Standalone mode with a log: every write is logged in `directory` before the disk sees it. */
async function throughTranslog(
  io: IoEngine, backing: BlockDevice, directory: string, name: string, host: string,
): Promise<BlockDevice> {
  try {
    return await openTranslog({
      storage: { files: systemFiles, io }, clock: systemClock,
      directory, resource: name, host, backing,
    });
  } catch (error) {
    await backing.close();
    throw error;
  }
}

async function openDevice(
  io: IoEngine, disk: string | undefined, size: string | undefined, directWrites: boolean,
): Promise<BlockDevice> {
  const sizeBytes = size === undefined ? undefined : parseSize(size);
  if (disk === undefined) {
    if (sizeBytes === undefined) throw new MarsError("usage", "give --disk FILE or --size BYTES");
    return createMemoryDevice(sizeBytes);
  }
  return openFileDevice({ files: systemFiles, io }, disk,
    sizeBytes === undefined ? { directWrites } : { createBytes: sizeBytes, directWrites });
}

/** Bytes with an optional binary suffix: 4096, 64K, 256M, 1G, 2T. */
export function parseSize(text: string): number {
  const match = /^(\d+)([KMGT]?)(i?B)?$/i.exec(text.trim());
  if (!match) throw new MarsError("usage", `'${text}' is not a size (e.g. 1G, 256M, 4096)`);
  const power = " KMGT".indexOf((match[2] || " ").toUpperCase());
  const bytes = Number(match[1]) * 1024 ** power;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) {
    throw new MarsError("usage", `size '${text}' is out of range`);
  }
  return bytes;
}

function parseDeviceIndex(text: string | undefined): number | "auto" | undefined {
  if (text === undefined) return undefined;
  if (text === "" || text === "auto" || text === "true") return "auto";
  const index = Number(text.replace(/^\/dev\/nbd/, ""));
  if (!Number.isSafeInteger(index) || index < 0) {
    throw new MarsError("usage", `--nbd-device takes N or 'auto', not '${text}'`);
  }
  return index;
}

function parseTcpAddress(text: string): Address {
  const match = /^(?:(.*):)?(\d+)$/.exec(text);
  if (!match) throw new MarsError("usage", `--tcp takes HOST:PORT, not '${text}'`);
  const host = match[1] === undefined || match[1] === "" ? "127.0.0.1" : match[1];
  const port = Number(match[2]);
  if (port > 65535) throw new MarsError("usage", `--tcp port ${port} is out of range`);
  return { kind: "tcp", host: host.replace(/^\[(.*)\]$/, "$1"), port };
}

function parseCount(value: unknown, option: string, fallback: number): number {
  if (value === undefined) return fallback;
  const count = Number(value);
  if (!Number.isSafeInteger(count) || count < 0) {
    throw new MarsError("usage", `${option} takes a whole number, not '${String(value)}'`);
  }
  return count;
}

/** Resolves with the name of the first SIGINT or SIGTERM. */
function waitForStopSignal(): Promise<string> {
  return new Promise((resolve) => {
    const stop = (signal: string) => {
      process.off("SIGINT", stop);
      process.off("SIGTERM", stop);
      resolve(signal);
    };
    process.on("SIGINT", stop);
    process.on("SIGTERM", stop);
  });
}
