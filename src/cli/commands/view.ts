/** Inspection: view (one line per resource, or --json / --raw) and the expert get-key/set-key. */
import { defineCommand } from "citty";
import { MarsError } from "../../lib/errors.ts";
import { keys, switchNames } from "../../cluster/keys.ts";
import { bucketOf } from "../../cluster/metadata-map.ts";
import type { ActualState } from "../../engine/resources.ts";
import { resourceNames } from "../../engine/resources.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { globalOptions } from "../global-args.ts";
import { positionText } from "../../log/position.ts";
import {
  splitBrainRecords, splitBrainWords, type SplitBrainView,
} from "../split-brain-view.ts";
import {
  asReport, lagSeconds, type ReplicationReport,
} from "../../replication/report.ts";

/** One resource as `view --json` shows it (docs/cli.md documents the keys). */
export interface ResourceView {
  readonly resource: string;
  readonly sizeBytes: number;
  readonly role: "primary" | "secondary" | "none";
  readonly primary: string | null;
  readonly members: readonly string[];
  /** attached | detached | failed | unknown (engine down) | none (not a member here) */
  readonly disk: string;
  readonly connection: { readonly alive: number; readonly peers: number } | null;
  readonly switches: Readonly<Record<string, boolean>>;
  readonly export: string | null;
  readonly error: string | null;
  /** This host's replication state (docs/cli.md, docs/replication.md); null when none. */
  readonly replication: ReplicationView | null;
  /** Every member's replication state, by host (what each host last published). */
  readonly replicas: Readonly<Record<string, ReplicationView>>;
  /** Split brains members found against the designated primary, by host (docs/roles.md). */
  readonly splitBrains: Readonly<Record<string, SplitBrainView>>;
}

/** One host's published replication state with lags in seconds added. */
export interface ReplicationView extends ReplicationReport {
  readonly fetchLagSeconds: number | null;
  readonly replayLagSeconds: number | null;
}

function replicationView(value: unknown): ReplicationView | null {
  const report = asReport(value);
  if (!report) return null;
  return {
    ...report,
    fetchLagSeconds: lagSeconds(report.fetchLagBytes, report.fetchRateBytesPerSecond),
    replayLagSeconds: lagSeconds(report.replayLagBytes, report.replayRateBytesPerSecond),
  };
}

export function viewResource(admin: AdminSession, resource: string): ResourceView {
  const host = admin.host;
  const members = admin.membersOf(resource);
  const member = members.includes(host);
  const primary = (admin.map.get(keys.primary(resource)) as string | undefined) || null;
  const actual = admin.map.get(keys.actual(resource, host)) as ActualState | undefined;
  const switches: Record<string, boolean> = {};
  for (const name of switchNames) {
    switches[name] = admin.map.get(keys.todo(resource, host, name)) === true;
  }
  const peers = members.filter((name) => name !== host);
  const alive = peers.filter((name) => admin.state?.peers[name]?.alive).length;
  let disk = "none";
  if (member) {
    if (!admin.engineRunning) disk = "unknown";
    else if (actual?.error) disk = "failed";
    else disk = actual?.attached ? "attached" : "detached";
  }
  return {
    resource, sizeBytes: admin.map.get(keys.size(resource)) as number,
    role: !member ? "none" : primary === host ? "primary" : "secondary",
    primary, members, disk,
    connection: admin.engineRunning ? { alive, peers: peers.length } : null,
    switches,
    export: admin.engineRunning && actual?.attached && actual.export ? actual.export : null,
    error: actual?.error || null,
    replication: member ? replicationView(admin.map.get(keys.replication(resource, host))) : null,
    replicas: Object.fromEntries(members.flatMap((name) => {
      const item = replicationView(admin.map.get(keys.replication(resource, name)));
      return item ? [[name, item]] : [];
    })),
    splitBrains: splitBrainRecords((key) => admin.map.get(key), resource, members),
  };
}

/** "replay=caught-up lag=0B/0s rate=…" for the line view. */
function replicationText(item: ReplicationView): string[] {
  if (item.status === "primary") {
    return [`log=${item.logEnd ? positionText(item.logEnd) : "?"}`,
      `write=${bytesText(item.writeRateBytesPerSecond)}/s`,
      ...(item.emergency ? ["emergency"] : [])];
  }
  const seconds = (value: number | null) => (value === null ? "?" : `${value}s`);
  return [
    `repl=${item.status}${item.consistent ? "" : ",inconsistent"}`,
    `fetch-lag=${bytesText(item.fetchLagBytes)}/${seconds(item.fetchLagSeconds)}`,
    `replay-lag=${bytesText(item.replayLagBytes)}/${seconds(item.replayLagSeconds)}`,
    `rate=${bytesText(item.replayRateBytesPerSecond)}/s`,
    ...(item.syncPercent === null ? [] : [`sync=${item.syncPercent}%`]),
    ...(item.defect ? [`defect=${JSON.stringify(`${item.defect.file}@${item.defect.offset}: ` +
      item.defect.reason)}`] : []),
    ...(item.problem && !item.defect ? [`problem=${JSON.stringify(item.problem)}`] : []),
  ];
}

function bytesText(bytes: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)}${units[unit]}`;
}

function flags(view: ResourceView): string {
  return switchNames.map((name) => (view.switches[name] ? name[0]!.toUpperCase() : "-")).join("");
}

function line(view: ResourceView): string {
  const connection = view.connection ? `${view.connection.alive}/${view.connection.peers}` : "?";
  return [
    view.resource.padEnd(16), view.role.padEnd(9), `primary=${view.primary ?? "(none)"}`,
    `disk=${view.disk}`, `size=${bytesText(view.sizeBytes)}`, `peers=${connection}`,
    `flags=${flags(view)}`,
    ...(view.replication ? replicationText(view.replication) : []),
    ...(view.export ? [`export=${view.export}`] : []),
    ...splitBrainWords(view.splitBrains),
    ...(view.error ? [`error=${JSON.stringify(view.error)}`] : []),
  ].join(" ");
}

export const view = defineCommand({
  meta: { name: "view", description: "One line per resource: role, primary, disk, peers, flags" },
  args: {
    resource: { type: "positional", required: false, valueHint: "RES",
      description: "Resource, comma list or 'all' (default)" },
    raw: { type: "boolean", description: "Every replicated key with its stamp (expert)" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      if (args.raw) return printRaw(admin, options.json);
      const names = args.resource ? admin.resources(args.resource) : resourceNames(admin.map);
      const views = names.map((resource) => viewResource(admin, resource));
      if (options.json) {
        console.log(JSON.stringify({
          host: admin.host, cluster: admin.identity.cluster, engineRunning: admin.engineRunning,
          resources: views,
        }));
        return;
      }
      for (const item of views) console.log(line(item));
      if (!admin.engineRunning) console.error(`(${engineDownNote})`);
    });
  },
});

function printRaw(admin: AdminSession, json: boolean): void {
  const entries = [...admin.map.all()].sort((left, right) => (left.key < right.key ? -1 : 1));
  for (const entry of entries) {
    const record = {
      key: entry.key, value: entry.value ?? null, deleted: entry.value === undefined,
      time: entry.stamp.time, writer: entry.stamp.host,
    };
    if (json) console.log(JSON.stringify(record));
    else {
      const value = entry.value === undefined ? "(deleted)" : JSON.stringify(entry.value);
      const when = new Date(entry.stamp.time).toISOString();
      console.log(`${entry.key} = ${value}  [${when} by ${entry.stamp.host}]`);
    }
  }
  printHeld(admin, json);
}

/** Entries from peers the membership rule holds aside (not applied; docs/cluster.md). */
function printHeld(admin: AdminSession, json: boolean): void {
  for (const entry of admin.map.heldEntries()) {
    const record = {
      key: entry.key, value: entry.deleted ? null : entry.value ?? null,
      deleted: entry.deleted === true, time: entry.time, writer: entry.host, held: true,
    };
    if (json) console.log(JSON.stringify(record));
    else {
      const value = entry.deleted ? "(deleted)" : JSON.stringify(entry.value);
      const when = new Date(entry.time).toISOString();
      console.log(`${entry.key} = ${value}  [${when} by ${entry.host}] held: not applied, ` +
        `${entry.host} is not known as a member of the resource`);
    }
  }
}

export const getKey = defineCommand({
  meta: { name: "get-key", description: "Print one replicated key's value as JSON (expert)" },
  args: { key: { type: "positional", required: true, valueHint: "KEY", description: "Key" } },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const value = admin.map.get(args.key);
      if (value === undefined) throw new MarsError("not-found", `no key '${args.key}'`);
      console.log(JSON.stringify(value));
    }, [args.key]);
  },
});

export const setKey = defineCommand({
  meta: { name: "set-key", description: "Write (or --delete) one replicated key (expert)" },
  args: {
    key: { type: "positional", required: true, valueHint: "KEY", description: "Key" },
    value: { type: "positional", required: false, valueHint: "JSON", description: "Value" },
    delete: { type: "boolean", description: "Delete the key (a tombstone)" },
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    let value: unknown;
    if (!args.delete) {
      if (args.value === undefined) throw new MarsError("usage", "set-key needs a JSON value");
      try {
        value = JSON.parse(args.value);
      } catch {
        throw new MarsError("usage", `not JSON: ${args.value}`);
      }
    }
    // The engine checks the write against its whole map; the key's bucket is enough here.
    await withAdmin(options, async (admin) => {
      await admin.write([value === undefined ? { key: args.key } : { key: args.key, value }]);
      console.log(`${args.delete ? "deleted" : "set"} ${args.key}`);
      if (!admin.engineRunning) console.log(engineDownNote);
    }, [bucketOf(args.key) ?? args.key, "member/"]);
  },
});
