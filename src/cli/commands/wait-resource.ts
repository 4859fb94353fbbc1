/** `mars wait-resource RES CONDITION`: until a named condition holds on this host, or timeout. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { withAdmin } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { parseCondition, pendingResources, resourceConditions } from "../resource-conditions.ts";
import { RoleView } from "../roles-state.ts";

/** How often the engine's state is read while waiting. */
export const waitPollIntervalMs = 100;

export const waitResource = defineCommand({
  meta: { name: "wait-resource", description: "Wait until a condition holds for a resource" },
  args: {
    resource: { type: "positional", required: true, valueHint: "RES",
      description: "Resource, comma list or 'all'" },
    condition: { type: "positional", required: true, valueHint: "CONDITION",
      description: resourceConditions.join(", ") },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const condition = parseCondition(args.condition);
    await withAdmin(options, async (admin) => {
      const names = admin.memberResources(args.resource, admin.host);
      for (const resource of names) {
        if (!admin.membersOf(resource).includes(admin.host)) {
          throw new MarsError("refused", `${admin.host} is not a member of ${resource}`);
        }
      }
      if (!admin.engineRunning) {
        throw new MarsError("engine", "the engine is not running on this host (mars run)");
      }
      const deadlineMs = Date.now() + options.timeoutSeconds * 1000;
      for (;;) {
        const view = new RoleView(await admin.refresh());
        const pending = pendingResources(view, names, admin.host, condition);
        if (pending.length === 0) break;
        if (Date.now() >= deadlineMs) {
          throw new MarsError("timeout", `not ${condition}: ${pending.join(", ")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, waitPollIntervalMs));
      }
      if (options.json) {
        console.log(JSON.stringify({ resources: names, condition, holds: true }));
        return;
      }
      console.log(`${names.join(",")}: ${condition}`);
    });
  },
});
