/** `mars run`: the engine in the foreground, logging to stderr, stopping gracefully on SIGTERM. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { directAttacher } from "../../engine/attach.ts";
import { Engine } from "../../engine/engine.ts";
import { lineLogger, type LogFormat } from "../../engine/logger.ts";
import { notifySystemd, restrictToOwner } from "../../platform/sd-notify.ts";
import { homeFiles } from "../../store/home.ts";
import { realEffects } from "../effects.ts";
import { globalOptions } from "../global-args.ts";

export default defineCommand({
  meta: { name: "run", description: "Run the engine in the foreground (systemd Type=notify)" },
  args: {
    "log-format": { type: "string", valueHint: "text|json", description: "Log line format" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const format = (args["log-format"] ?? "text") as LogFormat;
    if (format !== "text" && format !== "json") {
      throw new MarsError("usage", `--log-format is text or json, not '${format}'`);
    }
    const effects = realEffects();
    const logger = lineLogger(format, () => Date.now(),
      (text) => process.stderr.write(`${text}\n`), options.verbose);
    const engine = await Engine.start({
      homePath: options.home, effects, logger, attacher: directAttacher(effects),
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
