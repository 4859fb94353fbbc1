/** Desired switches per resource and host: up/down, attach/detach, pause-/resume-*. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { keys, type SwitchName } from "../../cluster/keys.ts";
import type { KeyWrite } from "../../engine/control.ts";
import { engineDownNote, withAdmin } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { dryRunArg, dryRunLine } from "../lifecycle.ts";

function switchCommand(name: string, description: string, switches: readonly SwitchName[],
  on: boolean) {
  return defineCommand({
    meta: { name, description },
    args: {
      resource: { type: "positional", required: true, valueHint: "RES",
        description: "Resource, comma list or 'all'" },
      global: { type: "boolean", description: "Set it for every member, not only this host" },
      "dry-run": dryRunArg,
    },
    async run({ args }) {
      const options = globalOptions(args, process.env);
      await withAdmin(options, async (admin) => {
        const writes: KeyWrite[] = [];
        for (const resource of admin.memberResources(args.resource, admin.host)) {
          const members = admin.membersOf(resource);
          // Only members may write about a resource, --global included (docs/cluster.md).
          if (!members.includes(admin.host)) {
            const elsewhere = args.global ? "" : " with --global";
            throw new MarsError("refused", `${admin.host} is not a member of ${resource}` +
              ` (join-resource first, or run it on a member${elsewhere})`);
          }
          const hosts = args.global ? members : [admin.host];
          for (const host of hosts) {
            for (const item of switches) {
              writes.push({ key: keys.todo(resource, host, item), value: on });
            }
          }
        }
        const scope = args.global ? "every member" : admin.host;
        const what = `${name} ${args.resource}: ${switches.join(",")} ${on ? "on" : "off"}` +
          ` for ${scope}`;
        if (args["dry-run"]) {
          console.log(dryRunLine(`would set ${what}`));
          return;
        }
        await admin.write(writes);
        console.log(what);
        if (!admin.engineRunning) console.log(engineDownNote);
      });
    },
  });
}

const all = ["attach", "fetch", "replay", "sync"] as const;

export const up = switchCommand("up", "Attach, fetch, replay and sync on", all, true);
export const down = switchCommand("down", "Attach, fetch, replay and sync off", all, false);
export const attach = switchCommand("attach", "Open the backing disk", ["attach"], true);
export const detach = switchCommand("detach", "Close the backing disk", ["attach"], false);
export const pauseFetch = switchCommand("pause-fetch", "Stop copying logfiles", ["fetch"], false);
export const resumeFetch = switchCommand("resume-fetch", "Copy logfiles again", ["fetch"], true);
export const pauseReplay = switchCommand("pause-replay", "Stop applying logs", ["replay"], false);
export const resumeReplay = switchCommand("resume-replay", "Apply logs again", ["replay"], true);
export const pauseSync = switchCommand("pause-sync", "Pause the full sync", ["sync"], false);
export const resumeSync = switchCommand("resume-sync", "Resume the full sync", ["sync"], true);
