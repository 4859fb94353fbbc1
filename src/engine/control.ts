/** The engine's control socket: admin commands on this host read state and write desired state. */
import { isMarsError, MarsError, type ErrorCode } from "../lib/errors.ts";
import { toWire, type WireEntry } from "../cluster/metadata-map.ts";
import type { LogPosition } from "../log/position.ts";
import type { Listener, Network } from "../platform/types.ts";
import { encodeFrame, FrameReader, frameBytesMax } from "../transport/framing.ts";
import type { ClusterNode } from "./cluster-node.ts";
import type { Logger } from "./logger.ts";

/** Writes one control request may carry. */
export const controlWritesMax = 10_000;
/** Key prefixes one state request may name. */
export const controlPrefixesMax = 64;

export interface KeyWrite {
  readonly key: string;
  /** Absent: delete the key (a tombstone). */
  readonly value?: unknown;
}

export type ControlRequest =
  /** The map (only the keys under `prefixes` when given: a command that reads a few keys). */
  | { readonly op: "state"; readonly prefixes?: readonly string[] }
  /** Where the logs of `resources` end now (wait-sync's targets; all resources if absent). */
  | { readonly op: "positions"; readonly resources?: readonly string[] }
  | { readonly op: "write"; readonly writes: readonly KeyWrite[] };

export interface PeerState {
  readonly alive: boolean;
  /** Milliseconds since the peer was last heard from; undefined: never since start. */
  readonly heardAgoMs: number | undefined;
}

export interface ControlState {
  readonly host: string;
  readonly cluster: string;
  /** The engine's monotonic clock, so a waiting command can compare "heard since". */
  readonly engineMs: number;
  readonly entries: readonly WireEntry[];
  /** Entries from peers held aside by the membership rule (docs/cluster.md). */
  readonly held?: readonly WireEntry[];
  readonly peers: Readonly<Record<string, PeerState>>;
}

export type ControlReply =
  | { readonly ok: true; readonly state?: ControlState;
      /** Per resource, where its log ends as this engine knows it now (wait-sync). */
      readonly positions?: Readonly<Record<string, LogPosition>>;
      /** Resources whose position is only the last one reported, not the primary's now: why. */
      readonly estimated?: Readonly<Record<string, string>> }
  | { readonly ok: false; readonly code: ErrorCode; readonly message: string };

/** Checks a decoded request; anything else is a protocol error. */
export function parseControlRequest(value: unknown): ControlRequest {
  const record = value as { op?: unknown; writes?: unknown } | null;
  if (record?.op === "state") {
    const prefixes = (value as { prefixes?: unknown }).prefixes;
    if (prefixes === undefined) return { op: "state" };
    if (Array.isArray(prefixes) && prefixes.length <= controlPrefixesMax &&
      prefixes.every((prefix) => typeof prefix === "string")) {
      return { op: "state", prefixes: prefixes as string[] };
    }
    throw new MarsError("protocol", "state: prefixes is a short list of key prefixes");
  }
  if (record?.op === "positions") {
    const resources = (value as { resources?: unknown }).resources;
    if (resources === undefined) return { op: "positions" };
    if (Array.isArray(resources) && resources.length <= controlWritesMax &&
      resources.every((name) => typeof name === "string")) {
      return { op: "positions", resources: resources as string[] };
    }
    throw new MarsError("protocol", "positions: resources is a list of names");
  }
  if (record?.op === "write" && Array.isArray(record.writes) &&
    record.writes.length <= controlWritesMax) {
    const writes = record.writes.map((write: unknown) => {
      const item = write as { key?: unknown; value?: unknown } | null;
      if (typeof item?.key !== "string") throw new MarsError("protocol", "a write needs a key");
      return item.value === undefined ? { key: item.key } : { key: item.key, value: item.value };
    });
    return { op: "write", writes };
  }
  throw new MarsError("protocol", "unknown control request");
}

export class ControlServer {
  private listener: Listener | undefined;

  constructor(
    private readonly node: ClusterNode,
    private readonly network: Network,
    private readonly logger: Logger,
    /** Called after desired state changed, so the engine reconciles at once. */
    private readonly changed: () => void,
    /** Where the resources' logs end now (replication and sync: asks the primaries). */
    private readonly positions: (resources: readonly string[] | undefined) => Promise<{
      positions: Record<string, LogPosition>; estimated: Record<string, string> }> =
      async () => ({ positions: {}, estimated: {} }),
  ) {}

  async start(path: string): Promise<void> {
    this.listener = await this.network.listen({ kind: "unix", path }, (connection) => {
      const reader = new FrameReader((value) => {
        void this.handle(value).then((reply) => connection.write(encodeFrame(reply)));
      });
      reader.payloadBytesMax = frameBytesMax;
      return {
        data: (chunk) => {
          try {
            reader.push(chunk);
          } catch (error) {
            if (!isMarsError(error)) throw error;
            connection.destroy();
          }
        },
        drain: () => {},
        closed: () => {},
      };
    });
  }

  stop(): void {
    this.listener?.close();
  }

  private async handle(value: unknown): Promise<ControlReply> {
    try {
      const request = parseControlRequest(value);
      if (request.op === "state") return { ok: true, state: this.state(request.prefixes) };
      if (request.op === "positions") {
        return { ok: true, ...await this.positions(request.resources) };
      }
      for (const write of request.writes) {
        if (write.value === undefined) this.node.map.delete(write.key);
        else this.node.map.set(write.key, write.value);
      }
      await this.node.flush();
      this.logger.log("info", "desired-state-written", { writes: request.writes.length });
      this.changed();
      return { ok: true };
    } catch (error) {
      if (!isMarsError(error)) throw error;
      return { ok: false, code: error.code, message: error.message };
    }
  }

  private state(prefixes?: readonly string[]): ControlState {
    const peers: Record<string, PeerState> = {};
    const now = this.node.context.clock.monotonicMs();
    for (const peer of this.node.sync.members()) {
      if (peer === this.node.identity.host) continue;
      const heard = this.node.lastHeardMs.get(peer);
      peers[peer] = {
        alive: this.node.isAlive(peer),
        heardAgoMs: heard === undefined ? undefined : Math.max(0, now - heard),
      };
    }
    return {
      host: this.node.identity.host, cluster: this.node.identity.cluster, engineMs: now,
      entries: this.entries(prefixes), held: this.node.map.heldEntries()
        .filter((entry) => !prefixes || prefixes.some((prefix) => entry.key.startsWith(prefix))),
      peers,
    };
  }

  /** Every entry, or those under `prefixes` (each once). */
  private entries(prefixes: readonly string[] | undefined): WireEntry[] {
    const { map } = this.node;
    if (!prefixes) return [...map.all()].map(toWire);
    const found = new Map<string, WireEntry>();
    for (const prefix of prefixes) {
      for (const entry of map.entriesUnder(prefix)) found.set(entry.key, toWire(entry));
    }
    return [...found.values()];
  }
}
