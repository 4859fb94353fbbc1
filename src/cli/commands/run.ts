/** `mars run`: the engine in the foreground, logging to stderr, stopping gracefully on SIGTERM. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { directAttacher, type KernelAttach } from "../../engine/attach.ts";
import { kernelDriverAvailable } from "../../platform/nbd-kernel.ts";
import { deviceOpeners } from "../../platform/device-openers.ts";
import { attachToKernel } from "./serve-kernel.ts";
import { defaultTiming } from "../../engine/cluster-node.ts";
import { Engine } from "../../engine/engine.ts";
import { lineLogger, type LogFormat } from "../../engine/logger.ts";
import { notifySystemd, restrictToOwner } from "../../platform/sd-notify.ts";
import { createPayloadPool } from "../../platform/payload-pool.ts";
import { Home, homeFiles } from "../../store/home.ts";
import { peerNetwork, tlsArgs, tlsFilesOf } from "../tls-args.ts";
import { realEffects } from "../effects.ts";
import { globalOptions } from "../global-args.ts";
import {
  defaultLifetimeSettings, type LifetimeSettings,
} from "../../retention/service.ts";

/** How long the kernel keeps a device whose server went away before failing its I/O. */
export const kernelDeadConnectionSeconds = 120;

export default defineCommand({
  meta: { name: "run", description: "Run the engine in the foreground (systemd Type=notify)" },
  args: {
    "log-format": { type: "string", valueHint: "text|json", description: "Log line format" },
    ...tlsArgs,
    "space-thresholds": {
      type: "string", valueHint: "WARN,TRIM,STOP-FETCH,EMERGENCY",
      description: "Free-space floors of the home in percent (default 20,10,5,2)",
    },
    "fetch-rate-limit": {
      type: "string", valueHint: "BYTES_PER_SECOND",
      description: "Most bytes per second each replica fetches (default 0 = unlimited)",
    },
    "retention-lag": {
      type: "string", valueHint: "BYTES,SECONDS",
      description: "A member further behind stops holding logfiles (default 64 GiB, 3 days)",
    },
    "tombstone-retention": {
      type: "string", valueHint: "SECONDS",
      description: `Keep deletions at least this long before purging (default ${
        defaultTiming.tombstoneRetentionMs / 1000})`,
    },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const fetchRateBytesPerSecondMax = fetchRateLimit(args["fetch-rate-limit"]);
    const format = (args["log-format"] ?? "text") as LogFormat;
    if (format !== "text" && format !== "json") {
      throw new MarsError("usage", `--log-format is text or json, not '${format}'`);
    }
    const chosen = realEffects(options.ioEngine);
    const identity = await new Home(options.home, chosen.storage, chosen.locks)
      .readIdentity();
    const tls = tlsFilesOf(args) ?? identity.tls;
    const logger = lineLogger(format, () => Date.now(),
      (text) => process.stderr.write(`${text}\n`), options.verbose);
    const effects = {
      ...realEffects(),
      network: peerNetwork(tls, (remote, reason) =>
        logger.log("warn", "peer-refused", { remote, reason })),
    };
    const retentionText = args["tombstone-retention"] ?? defaultTiming.tombstoneRetentionMs / 1000;
    const retention = Number(retentionText);
    if (!Number.isFinite(retention) || retention < 0) {
      throw new MarsError("usage", "--tombstone-retention takes a number of seconds");
    }
    if (tls) logger.log("info", "peer-tls", { cert: tls.certFile, ca: tls.caFile });
    const warn = (reason: string) => logger.log("warn", "kernel-nbd", { reason });
    const kernel: KernelAttach | undefined = kernelDriverAvailable()
      ? async (server, resource) => {
        try {
          const attached = await attachToKernel(server, resource, "auto",
            kernelDeadConnectionSeconds, warn);
          const devicePath = attached.devicePath;
          return {
            devicePath, detach: () => attached.detach(warn),
            resize: (sizeBytes) => attached.resize(sizeBytes),
            // A failed look counts as open: the primary does not step down under a user.
            holders: (stepping) => deviceOpeners(devicePath, { claimProbe: stepping })
              .catch((error) => [`${devicePath}: the open check failed (${error})`]),
          };
        } catch (error) {
          warn(`${resource}: kernel attach failed, serving the unix socket only: ${error}`);
          return undefined;
        }
      }
      : undefined;
    const engine = await Engine.start({
      homePath: options.home, effects, logger, lifetime: lifetimeSettings(args),
      fetchRateBytesPerSecondMax,
      // One pool for every export of this process: it lives as long as the process.
      attacher: directAttacher({
        ...effects, payloadBuffers: createPayloadPool(), ...(kernel ? { kernel } : {}),
      }),
      timing: { ...defaultTiming, tombstoneRetentionMs: Math.round(retention * 1000) },
    });
    restrictToOwner(engine.home.file(homeFiles.control));
    notifySystemd("READY=1\nSTATUS=serving");
    const signal = await new Promise<string>((resolve) => {
      process.once("SIGTERM", () => resolve("SIGTERM"));
      process.once("SIGINT", () => resolve("SIGINT"));
    });
    notifySystemd("STOPPING=1");
    await engine.stop(signal);
  },
});

/** --space-thresholds and --retention-lag, checked, over the documented defaults. */
function lifetimeSettings(args: Record<string, unknown>): LifetimeSettings {
  const numbers = (name: string, count: number): number[] | undefined => {
    const text = args[name];
    if (text === undefined) return undefined;
    const values = String(text).split(",").map(Number);
    if (values.length !== count || values.some((value) => !Number.isFinite(value) || value < 0)) {
      throw new MarsError("usage", `--${name} takes ${count} comma-separated numbers`);
    }
    return values;
  };
  const floors = numbers("space-thresholds", 4);
  const lag = numbers("retention-lag", 2);
  const thresholds = floors ? {
    ...defaultLifetimeSettings.thresholds, warnFreeFraction: floors[0]! / 100,
    trimFreeFraction: floors[1]! / 100, stopFetchFreeFraction: floors[2]! / 100,
    emergencyFreeFraction: floors[3]! / 100,
  } : defaultLifetimeSettings.thresholds;
  const descending = thresholds.warnFreeFraction <= 1 &&
    thresholds.warnFreeFraction >= thresholds.trimFreeFraction &&
    thresholds.trimFreeFraction >= thresholds.stopFetchFreeFraction &&
    thresholds.stopFetchFreeFraction >= thresholds.emergencyFreeFraction;
  if (!descending) throw new MarsError("usage", "--space-thresholds must descend, ≤ 100");
  return {
    thresholds,
    retention: lag ? { lagBytesMax: lag[0]!, lagAgeMsMax: lag[1]! * 1000 }
      : defaultLifetimeSettings.retention,
  };
}

/** --fetch-rate-limit: a whole number of bytes per second; 0 means unlimited. */
function fetchRateLimit(text: unknown): number {
  if (text === undefined) return 0;
  const value = Number(text);
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new MarsError("usage", "--fetch-rate-limit takes a whole number of bytes per second");
  }
  return value;
}
