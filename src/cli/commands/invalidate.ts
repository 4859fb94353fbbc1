/** `mars invalidate RES`: discard this replica; the engine full-syncs it from the primary. */
import { defineCommand } from "citty";
import { keys } from "../../cluster/keys.ts";
import type { KeyWrite } from "../../engine/control.ts";
import { MarsError } from "../../lib/errors.ts";
import { engineDownNote, withAdmin } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { repairPlan } from "../split-brain-view.ts";

export const invalidate = defineCommand({
  meta: {
    name: "invalidate",
    description: "Discard this replica (replay position and logfiles); full sync from the primary",
  },
  args: {
    resource: { type: "positional", required: true, valueHint: "RES",
      description: "Resource, comma list or 'all'" },
    "dry-run": { type: "boolean",
      description: "Say what the resync (a split brain's repair) would move; change nothing" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const writes: KeyWrite[] = [];
      for (const resource of admin.resources(args.resource)) {
        if (!admin.membersOf(resource).includes(admin.host)) {
          throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
        }
        if (admin.map.get(keys.primary(resource)) === admin.host) {
          throw new MarsError("refused", `${admin.host} is the primary of ${resource}: ` +
            "its device is the source of truth (make another host primary first)");
        }
        if (args["dry-run"]) {
          console.log(repairPlan(admin.map.get.bind(admin.map), resource, admin.host));
          continue;
        }
        writes.push({ key: keys.invalidate(resource, admin.host),
          value: Math.floor(admin.effects.clock.nowMs()) });
      }
      if (args["dry-run"]) return;
      await admin.write(writes);
      console.log(`invalidate ${args.resource}: this replica is discarded; a full sync follows ` +
        "(mars view shows its progress, mars wait-sync waits for it)");
      if (!admin.engineRunning) console.log(engineDownNote);
    });
  },
});
