/** `mars version` / `mars --version`: what was built; with --verbose, the platform it runs on. */
import { defineCommand } from "citty";
import { marsCommit, marsVersion } from "../build-info.ts";
import { globalOptions } from "../global-args.ts";
import { platformFacts } from "../../platform/facts.ts";

export default defineCommand({
  meta: { name: "version", description: "Print the version and commit (--verbose: platform)" },
  args: {},
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const facts = options.verbose ? await platformFacts(options.ioEngine) : undefined;
    if (options.json) {
      console.log(JSON.stringify({ version: marsVersion, commit: marsCommit, platform: facts }));
      return;
    }
    console.log(`mars ${marsVersion} (commit ${marsCommit})`);
    if (facts) {
      for (const [key, value] of Object.entries(facts)) console.log(`  ${key}: ${value}`);
    }
  },
});
