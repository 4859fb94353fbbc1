/** Cluster membership commands: create-cluster, join-cluster, leave-cluster, wait-cluster. */
import { defineCommand } from "citty";
import { hostname } from "../../platform/host-name.ts";
import { secureRandomBytes } from "../../platform/random.ts";
import { MarsError } from "../../lib/errors.ts";
import { checkName, keys, nameProblem } from "../../cluster/keys.ts";
import { LamportClock } from "../../cluster/lamport.ts";
import { MetadataMap, toWire } from "../../cluster/metadata-map.ts";
import { parseListen } from "../../engine/cluster-node.ts";
import { resourceNames } from "../../engine/resources.ts";
import { Home, homeFiles, homeFormat, parseSecret, type Identity } from "../../store/home.ts";
import { makeNonce, secretBytesMin } from "../../transport/handshake.ts";
import type { KeyWrite } from "../../engine/control.ts";
import { engineDownNote, withAdmin, type AdminSession } from "../admin.ts";
import { dryRunArg, dryRunLine, leaveWrites, requireNotAlive } from "../lifecycle.ts";
import { realEffects } from "../effects.ts";
import { globalOptions } from "../global-args.ts";
import { readSecretSource } from "../secret-source.ts";
import { joinThroughPeer } from "../join.ts";
import { peerNetwork, tlsArgs, tlsFilesOf } from "../tls-args.ts";

export const defaultPort = 7777;

const hostArg = {
  type: "string", valueHint: "NAME", description: "This host's name (default: the machine's)",
} as const;
const listenArg = {
  type: "string", valueHint: "ADDR:PORT",
  description: `Where the engine listens for peers (default 0.0.0.0:${defaultPort})`,
} as const;

/** The host name to use: --host, else the machine's name when it is a valid mars name. */
export function chooseHost(given: unknown): string {
  if (typeof given === "string") return checkName("host", given);
  const machine = hostname().split(".")[0]!.toLowerCase();
  if (nameProblem(machine)) {
    throw new MarsError("usage", `the machine name '${machine}' is no valid host name: use --host`);
  }
  return machine;
}

/** The listen address, and the address peers should dial (a wildcard becomes the host name). */
export function chooseListen(given: unknown): { listen: string; advertised: string } {
  const listen = typeof given === "string" ? given : `0.0.0.0:${defaultPort}`;
  const address = (() => {
    try {
      return parseListen(/:\d+$/.test(listen) ? listen : `${listen}:${defaultPort}`);
    } catch {
      throw new MarsError("usage", `--listen takes ADDR:PORT, not '${listen}'`);
    }
  })();
  if (address.kind !== "tcp") throw new MarsError("usage", "--listen takes ADDR:PORT");
  const wildcard = address.host === "0.0.0.0" || address.host === "::" || address.host === "";
  const host = wildcard ? hostname() : address.host;
  const bracketed = host.includes(":") ? `[${host}]` : host;
  return {
    listen: `${address.host.includes(":") ? `[${address.host}]` : address.host}:${address.port}`,
    advertised: `${bracketed}:${address.port}`,
  };
}

function hex(bytes: Uint8Array): string {
  return [...bytes].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}

export const createCluster = defineCommand({
  meta: { name: "create-cluster", description: "Create a new cluster with this host in it" },
  args: { host: hostArg, listen: listenArg, ...tlsArgs },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const tls = tlsFilesOf(args);
    const host = chooseHost(args.host);
    const { listen, advertised } = chooseListen(args.listen);
    const effects = realEffects();
    const home = new Home(options.home, effects.storage, effects.locks);
    await home.prepare();
    const secret = secureRandomBytes(new Uint8Array(secretBytesMin));
    const createdMs = effects.clock.nowMs();
    const suffix = hex(makeNonce(effects.random)).slice(0, 8);
    const cluster = `${host}-${createdMs.toString(36)}-${suffix}`;
    const identity: Identity = {
      format: homeFormat, cluster, host, listen,
      incarnation: hex(makeNonce(effects.random)).slice(0, 16), createdMs,
      ...(tls ? { tls } : {}),
    };
    const map = new MetadataMap(host, new LamportClock(() => effects.clock.nowMs()));
    map.set(keys.member(host), { address: advertised });
    await home.writeSecret(cluster, secret);
    await home.writeMetadata({
      format: homeFormat, lamportTime: map.clock.time, seqHigh: map.seqHigh,
      entries: [...map.all()].map(toWire), peers: {},
    });
    await home.writeIdentity(identity);
    const secretPath = home.file(homeFiles.secret);
    if (options.json) {
      console.log(JSON.stringify({ cluster, host, listen, advertised, secretFile: secretPath }));
      return;
    }
    console.log(`created cluster ${cluster} with host ${host} (peers reach it at ${advertised})`);
    console.log(`secret: ${secretPath} (mode 0600; give it to join-cluster with --secret-file)`);
    console.log(`start the engine: mars run --home ${options.home}`);
  },
});

export const joinCluster = defineCommand({
  meta: { name: "join-cluster", description: "Join an existing cluster through any member" },
  args: {
    peer: { type: "positional", required: true, valueHint: "PEER[:PORT]",
      description: "Any member's address" },
    "secret-file": { type: "string", valueHint: "FILE",
      description: "The cluster secret file (or env MARS_CLUSTER_SECRET)" },
    host: hostArg, listen: listenArg, ...tlsArgs,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    const tls = tlsFilesOf(args);
    const host = chooseHost(args.host);
    const { listen, advertised } = chooseListen(args.listen);
    const { cluster, secret } = parseSecret(await readSecretSource(args["secret-file"]));
    const peerText = /:\d+$/.test(args.peer) ? args.peer : `${args.peer}:${defaultPort}`;
    const effects = { ...realEffects(), network: peerNetwork(tls) };
    const home = new Home(options.home, effects.storage, effects.locks);
    if (await home.isInitialised()) {
      throw new MarsError("refused", `${options.home} already belongs to a cluster`);
    }
    const joined = await joinThroughPeer({
      effects, peer: parseListenOrUsage(peerText), cluster, secret, host, advertised,
    });
    await home.prepare();
    await home.writeSecret(cluster, secret);
    await home.writeMetadata(joined.snapshot);
    await home.writeIdentity({
      format: homeFormat, cluster, host, listen, createdMs: effects.clock.nowMs(),
      incarnation: hex(makeNonce(effects.random)).slice(0, 16),
      ...(tls ? { tls } : {}),
    });
    if (options.json) {
      console.log(JSON.stringify({ cluster, host, listen, advertised, via: joined.peer }));
      return;
    }
    console.log(`joined cluster ${cluster} as ${host} through ${joined.peer}` +
      ` (${joined.members} members, ${joined.resources} resources)`);
    console.log(`start the engine: mars run --home ${options.home}`);
  },
});

function parseListenOrUsage(text: string) {
  try {
    return parseListen(text);
  } catch {
    throw new MarsError("usage", `PEER takes HOST[:PORT], not '${text}'`);
  }
}

export const leaveCluster = defineCommand({
  meta: {
    name: "leave-cluster", description: "Leave the cluster (or, --host --force, drop a dead host)",
  },
  args: {
    host: { type: "string", valueHint: "NAME", description: "Remove this (dead) host instead" },
    force: { type: "boolean", description: "Needed with --host" },
    "dry-run": dryRunArg,
  },
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      const target = typeof args.host === "string" ? checkName("host", args.host) : admin.host;
      const memberships = checkLeaveCluster(admin, target, args.force === true);
      // A removed host's resource memberships go with it (as leave-resource --host --force).
      const writes: KeyWrite[] = memberships.flatMap((resource) =>
        leaveWrites(admin.map, resource, target));
      writes.push({ key: keys.member(target) });
      const also = memberships.length > 0 ? ` and from ${memberships.join(",")}` : "";
      if (args["dry-run"]) {
        console.log(dryRunLine(`host ${target} would be removed from the cluster${also}`));
        return;
      }
      await admin.write(writes);
      console.log(`host ${target} left the cluster${also}` +
        (admin.engineRunning ? "" : `\n${engineDownNote}`));
    });
  },
});

/** Preconditions of leave-cluster; returns the resources `target` is removed from too. */
function checkLeaveCluster(admin: AdminSession, target: string, force: boolean): string[] {
  if (admin.map.get(keys.member(target)) === undefined) {
    throw new MarsError("unknown-host", `host '${target}' is not a member`);
  }
  const memberships = resourceNames(admin.map)
    .filter((resource) => admin.membersOf(resource).includes(target));
  if (target === admin.host) {
    if (memberships.length > 0) {
      throw new MarsError("refused",
        `${target} is still a member of ${memberships.join(",")}: leave-resource first`);
    }
    return [];
  }
  if (!force) {
    throw new MarsError("refused", `removing ${target} needs --force ` +
      "(it is for a dead host; a live one runs leave-cluster itself)");
  }
  requireNotAlive(admin, target, "leave-cluster");
  const foreign = memberships.filter((resource) =>
    !admin.membersOf(resource).includes(admin.host));
  if (foreign.length > 0) {
    throw new MarsError("refused", `${target} is a member of ${foreign.join(",")}, which ` +
      `${admin.host} is not: a member of each runs leave-resource RES --host ${target} --force`);
  }
  return memberships;
}

export const waitCluster = defineCommand({
  meta: {
    name: "wait-cluster", description: "Wait until every member was seen alive after the call",
  },
  args: {},
  async run({ args }) {
    const options = globalOptions(args, process.env);
    await withAdmin(options, async (admin) => {
      if (!admin.engineRunning) {
        throw new MarsError("engine", "the engine is not running on this host (mars run)");
      }
      const started = admin.state!.engineMs;
      const deadline = Date.now() + options.timeoutSeconds * 1000;
      for (;;) {
        const state = await admin.refresh();
        const missing = Object.entries(state.peers).filter(([, peer]) =>
          peer.heardAgoMs === undefined || state.engineMs - peer.heardAgoMs <= started)
          .map(([name]) => name);
        if (missing.length === 0) {
          console.log(`all ${Object.keys(state.peers).length} peers alive`);
          return;
        }
        if (Date.now() >= deadline) {
          throw new MarsError("timeout", `not seen alive: ${missing.join(", ")}`);
        }
        await new Promise((resolve) => setTimeout(resolve, 100));
      }
    });
  },
});
