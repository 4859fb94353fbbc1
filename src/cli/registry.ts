/** Every command declared as data: name, group, one-line summary and how to load it. */
import type { CommandDef } from "citty";

export const commandGroups = [
  ["cluster", "Cluster"],
  ["resource", "Resources"],
  ["roles", "Roles"],
  ["data", "Data path"],
  ["inspection", "Inspection and waiting"],
  ["engine", "Engine and others"],
] as const;
export type CommandGroup = (typeof commandGroups)[number][0];

export interface CommandEntry {
  readonly name: string;
  readonly group: CommandGroup;
  readonly summary: string;
  /** Loaded only when the command runs, so `mars --help` stays fast. */
  readonly load: () => Promise<CommandDef<any>>;
}

// Keep one line per command; later capabilities add theirs here and nowhere else.
export const commands: readonly CommandEntry[] = [
  {
    name: "serve", group: "data",
    summary: "Export one disk over NBD: unix socket, TCP, kernel /dev/nbdN (standalone mode)",
    load: () => import("./commands/serve.ts").then((module) => module.default),
  },
  {
    name: "create-cluster", group: "cluster",
    summary: "Create a cluster with this host in it; prints the secret file",
    load: () => import("./commands/cluster.ts").then((module) => module.createCluster),
  },
  {
    name: "join-cluster", group: "cluster",
    summary: "Join a cluster through any member (--secret-file FILE)",
    load: () => import("./commands/cluster.ts").then((module) => module.joinCluster),
  },
  {
    name: "leave-cluster", group: "cluster",
    summary: "Leave the cluster (--host NAME --force: drop a dead host)",
    load: () => import("./commands/cluster.ts").then((module) => module.leaveCluster),
  },
  {
    name: "wait-cluster", group: "cluster",
    summary: "Wait until every member was seen alive after the call",
    load: () => import("./commands/cluster.ts").then((module) => module.waitCluster),
  },
  {
    name: "create-resource", group: "resource",
    summary: "Create a resource on DISK; this host becomes primary",
    load: () => import("./commands/resource.ts").then((module) => module.createResource),
  },
  {
    name: "join-resource", group: "resource",
    summary: "Become a secondary of a resource with DISK",
    load: () => import("./commands/resource.ts").then((module) => module.joinResource),
  },
  {
    name: "primary", group: "roles",
    summary: "Make this host primary: planned handover (--force: failover)",
    load: () => import("./commands/roles.ts").then((module) => module.primary),
  },
  {
    name: "secondary", group: "roles",
    summary: "Leave the resource without a designated primary",
    load: () => import("./commands/roles.ts").then((module) => module.secondary),
  },
  {
    name: "invalidate", group: "resource",
    summary: "Discard this replica and full-sync it from the primary",
    load: () => import("./commands/invalidate.ts").then((module) => module.invalidate),
  },
  {
    name: "resize", group: "resource",
    summary: "Grow a resource online to SIZE (default: as far as every member's disk allows)",
    load: () => import("./commands/resize.ts").then((module) => module.resize),
  },
  {
    name: "leave-resource", group: "resource",
    summary: "Stop being a member of a resource (--host NAME --force: a dead host's)",
    load: () => import("./commands/resource.ts").then((module) => module.leaveResource),
  },
  {
    name: "delete-resource", group: "resource",
    summary: "Forget a resource cluster-wide once no member is left (--force: even then)",
    load: () => import("./commands/resource.ts").then((module) => module.deleteResource),
  },
  {
    name: "up", group: "resource",
    summary: "Attach, fetch, replay and sync on (--global: every member)",
    load: () => import("./commands/switches.ts").then((module) => module.up),
  },
  {
    name: "down", group: "resource",
    summary: "Attach, fetch, replay and sync off (--global: every member)",
    load: () => import("./commands/switches.ts").then((module) => module.down),
  },
  {
    name: "attach", group: "resource",
    summary: "Open the backing disk (and export it on the primary)",
    load: () => import("./commands/switches.ts").then((module) => module.attach),
  },
  {
    name: "detach", group: "resource",
    summary: "Close the backing disk (and stop exporting)",
    load: () => import("./commands/switches.ts").then((module) => module.detach),
  },
  {
    name: "pause-fetch", group: "resource",
    summary: "Stop copying logfiles from peers",
    load: () => import("./commands/switches.ts").then((module) => module.pauseFetch),
  },
  {
    name: "resume-fetch", group: "resource",
    summary: "Copy logfiles from peers again",
    load: () => import("./commands/switches.ts").then((module) => module.resumeFetch),
  },
  {
    name: "pause-replay", group: "resource",
    summary: "Stop applying logs to the disk",
    load: () => import("./commands/switches.ts").then((module) => module.pauseReplay),
  },
  {
    name: "resume-replay", group: "resource",
    summary: "Apply logs to the disk again",
    load: () => import("./commands/switches.ts").then((module) => module.resumeReplay),
  },
  {
    name: "pause-sync", group: "resource",
    summary: "Pause the full sync",
    load: () => import("./commands/switches.ts").then((module) => module.pauseSync),
  },
  {
    name: "resume-sync", group: "resource",
    summary: "Resume the full sync",
    load: () => import("./commands/switches.ts").then((module) => module.resumeSync),
  },
  {
    name: "view", group: "inspection",
    summary: "One line per resource: role, primary, disk, peers, flags",
    load: () => import("./commands/view.ts").then((module) => module.view),
  },
  {
    name: "wait-sync", group: "inspection",
    summary: "Wait until replicas are consistent and caught up to the primary's position",
    load: () => import("./commands/wait-sync.ts").then((module) => module.waitSync),
  },
  {
    name: "wait-resource", group: "inspection",
    summary: "Wait until RES is attached, primary, secondary, detached, device-closed, consistent",
    load: () => import("./commands/wait-resource.ts").then((module) => module.waitResource),
  },
  {
    name: "get-key", group: "inspection",
    summary: "Print one replicated metadata key (expert)",
    load: () => import("./commands/view.ts").then((module) => module.getKey),
  },
  {
    name: "set-key", group: "inspection",
    summary: "Write or delete one replicated metadata key (expert)",
    load: () => import("./commands/view.ts").then((module) => module.setKey),
  },
  {
    name: "log", group: "inspection",
    summary: "Inspect logfiles: 'log dump FILE', 'log verify PATH...' (records and chain)",
    load: () => import("./commands/log.ts").then((module) => module.default),
  },
  {
    name: "run", group: "engine", summary: "Run the engine in the foreground (systemd Type=notify)",
    load: () => import("./commands/run.ts").then((module) => module.default),
  },
  {
    name: "demo", group: "engine",
    summary: "A three-host cluster on this machine: replication shown and verified",
    load: () => import("./commands/demo.ts").then((module) => module.default),
  },
  {
    name: "version", group: "engine", summary: "Print the version and commit (--verbose: platform)",
    load: () => import("./commands/version.ts").then((module) => module.default),
  },
];

export function findCommand(name: string): CommandEntry | undefined {
  return commands.find((entry) => entry.name === name);
}
