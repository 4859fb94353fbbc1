/** The engine's replication: serves logs, runs a replica per secondary, publishes their state. */
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import { comparePositions, type LogPosition } from "../log/position.ts";
import type { Address, Clock, Network, Storage, TimerHandle } from "../platform/types.ts";
import type { ChannelContext, Session, SessionHandlers } from "../transport/channel.ts";
import { directorySource, serveLogSession, type LogSource } from "./log-server.ts";
import { Replica } from "./replica.ts";
import { TailWatcher } from "./tail-watcher.ts";
import { asReport, type ReplicationReport } from "./report.ts";

/** How often each resource's replication state is sampled and, when changed, published. */
export const reportIntervalMs = 500;
/** A primary unreachable this long makes a replica fetch from a member that is further ahead. */
export const sourceFailoverMs = 10_000;
/** How long a replica fetches from another member before it tries the primary again. */
export const sourceRetryPrimaryMs = 60_000;

/** The primary's log as replication sees it (the translog device provides these). */
export interface PrimaryLog {
  readonly logEnd: LogPosition;
  readonly durableEnd: LogPosition;
  readonly writebackPosition: LogPosition;
  /** True while the primary writes past the log (emergency mode, src/retention). */
  readonly emergency?: boolean;
}

export interface ReplicationServiceOptions {
  readonly map: MetadataMap;
  readonly host: string;
  readonly storage: Storage;
  readonly clock: Clock;
  readonly network: Network;
  readonly context: ChannelContext;
  /** Where a member's engine listens, from its member key. */
  readonly addressOf: (host: string) => Address | undefined;
  /** Bytes per second each replica may fetch; 0 or absent = unlimited. */
  readonly fetchRateBytesPerSecondMax?: number;
  readonly log: (level: "info" | "warn" | "error", event: string,
    fields: Readonly<Record<string, string | number | boolean | undefined>>) => void;
}

interface Served {
  readonly source: LogSource;
  readonly primary?: PrimaryLog;
  sample?: { atMs: number; end: LogPosition; rate: number };
  /** The primary's positions when it last published a report with no write rate. */
  quiet?: { logEnd: LogPosition; durableEnd: LogPosition; writeback: LogPosition;
    emergency: boolean };
}

export class ReplicationService {
  private readonly replicas = new Map<string, Replica>();
  private readonly served = new Map<string, Served>();
  private readonly published = new Map<string, ReplicationReport>();
  private readonly sessions = new Set<Session>();
  private readonly tail: TailWatcher;
  /** Replicas fetching from a member other than the primary, and since when. */
  private readonly fallbacks = new Map<string, { peer: string; sinceMs: number }>();
  private timer: TimerHandle | undefined;
  private stopped = false;

  constructor(private readonly options: ReplicationServiceOptions) {
    this.tail = new TailWatcher(options.clock);
    options.map.onChange((entry) => {
      const [first, resource, third] = entry.key.split("/");
      if (first === "resource" && resource && (third === "todo" || third === "primary")) {
        this.configure(resource);
      } else if (first === "member") {
        for (const name of this.replicas.keys()) this.configure(name);
      }
    });
    this.schedule();
  }

  /** Handles an accepted "log" session (a peer fetching from us). */
  serve(session: Session): SessionHandlers {
    this.sessions.add(session);
    const handlers = serveLogSession(session, {
      storage: this.options.storage, clock: this.options.clock, tail: this.tail,
      // A peer reads only the logs of resources it is a member of (DESIGN §3.7).
      source: (resource) => this.options.map.get(keys.resourceMember(resource, session.peer))
        === undefined ? undefined : this.served.get(resource)?.source,
      log: (level, event, fields) => this.log(level, event, fields),
    });
    return {
      ...handlers,
      closed: (reason) => {
        this.sessions.delete(session);
        handlers.closed(reason);
      },
    };
  }

  /** Serves the primary's log of `resource` until the returned function is called. */
  attachPrimary(resource: string, directory: string, primary: PrimaryLog): () => void {
    this.served.set(resource, {
      source: directorySource(this.options.storage, directory, () => primary.durableEnd),
      primary,
    });
    return () => {
      this.served.delete(resource);
      this.published.delete(resource); // a resource attached again later reports afresh
    };
  }

  /**
   * Starts fetch and replay of `resource` onto `disk`; the result stops them again. With
   * `inconsistentReason` the replica reads inconsistent from its first report on.
   */
  async attachSecondary(
    resource: string, disk: string, directory: string, inconsistentReason?: string,
  ): Promise<() => Promise<void>> {
    const replica = await Replica.open({
      ...(inconsistentReason === undefined ? {} : { inconsistentReason }),
      resource, disk, directory, storage: this.options.storage, clock: this.options.clock,
      network: this.options.network, context: this.options.context,
      fetchRateBytesPerSecondMax: this.options.fetchRateBytesPerSecondMax ?? 0,
      log: (level, event, fields) => this.log(level, event, { resource, ...fields }),
      changed: () => {},
    });
    this.replicas.set(resource, replica);
    const fetcher = replica.fetcher;
    this.served.set(resource, {
      source: directorySource(this.options.storage, directory, () => fetcher.fetchedEnd,
        (sequence) => {
          const extent = fetcher.extent(sequence);
          return extent?.finished ? extent.lengthBytes : undefined;
        }),
    });
    this.configure(resource);
    return async () => {
      this.replicas.delete(resource);
      this.fallbacks.delete(resource);
      this.served.delete(resource);
      this.published.delete(resource);
      await replica.close();
    };
  }

  /** The replica of `resource` on this host (for the sync and lifetime code). */
  replica(resource: string): Replica | undefined {
    return this.replicas.get(resource);
  }

  /** Where each resource's log ends as this host knows it now (wait-sync's target). */
  positions(): Record<string, LogPosition> {
    const result: Record<string, LogPosition> = {};
    for (const [resource, served] of this.served) {
      if (served.primary) result[resource] = served.primary.logEnd;
    }
    for (const [resource, replica] of this.replicas) {
      const end = replica.fetcher.sourceEnd;
      if (end) result[resource] = end;
    }
    return result;
  }

  private configure(resource: string): void {
    const replica = this.replicas.get(resource);
    if (!replica || this.stopped) return;
    const { map, host } = this.options;
    const fetch = map.get(keys.todo(resource, host, "fetch")) === true;
    const replay = map.get(keys.todo(resource, host, "replay")) === true;
    const primary = map.get(keys.primary(resource));
    const fallback = this.fallbacks.get(resource)?.peer;
    const peer = fallback ?? (typeof primary === "string" && primary !== host ? primary : "");
    const address = peer === "" ? undefined : this.options.addressOf(peer);
    replica.configure({ fetch, replay }, address ? { peer, address } : undefined);
  }

  /**
   * The origin is preferred, any member may serve: when the primary has been unreachable for
   * `sourceFailoverMs`, fetch from the member whose copy reaches furthest beyond ours; go back
   * to the primary after `sourceRetryPrimaryMs` (or when the fallback fails too).
   */
  private chooseSource(resource: string, replica: Replica): void {
    const now = this.options.clock.monotonicMs();
    const current = this.fallbacks.get(resource);
    const unreachableSince = replica.fetcher.unreachableSinceMs;
    if (current) {
      const failing = unreachableSince !== undefined && now - unreachableSince >= sourceFailoverMs;
      if (now - current.sinceMs < sourceRetryPrimaryMs && !failing) return;
      this.fallbacks.delete(resource);
      this.log("info", "log-source-primary-again", { resource });
      return this.configure(resource);
    }
    if (unreachableSince === undefined || now - unreachableSince < sourceFailoverMs) return;
    const best = this.furthestMember(resource, replica);
    if (!best) return;
    this.fallbacks.set(resource, { peer: best, sinceMs: now });
    this.log("warn", "log-source-fallback", { resource, peer: best });
    this.configure(resource);
  }

  private furthestMember(resource: string, replica: Replica): string | undefined {
    const { map, host } = this.options;
    const primary = map.get(keys.primary(resource));
    const prefix = `resource/${resource}/member/`;
    let best: { peer: string; fetched: LogPosition } | undefined;
    for (const entry of map.list(prefix)) {
      const peer = entry.key.slice(prefix.length);
      if (peer === host || peer === primary) continue;
      const fetched = asReport(map.get(keys.replication(resource, peer)))?.fetched;
      if (!fetched || comparePositions(fetched, replica.fetcher.fetchedEnd) <= 0) continue;
      if (!best || comparePositions(fetched, best.fetched) > 0) best = { peer, fetched };
    }
    return best?.peer;
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.options.clock.setTimer(reportIntervalMs, () => {
      this.publishAll();
      this.schedule();
    });
  }

  private publishAll(): void {
    for (const [resource, replica] of this.replicas) {
      replica.maintain();
      this.chooseSource(resource, replica);
      this.publish(resource, replica.report());
    }
    for (const [resource, served] of this.served) {
      if (!served.primary || stillQuiet(served, served.primary)) continue;
      const report = this.primaryReport(served, served.primary);
      this.publish(resource, report);
      served.quiet = report.writeRateBytesPerSecond !== 0 ? undefined : {
        logEnd: served.primary.logEnd, durableEnd: served.primary.durableEnd,
        writeback: served.primary.writebackPosition, emergency: report.emergency === true,
      };
    }
  }

  private primaryReport(served: Served, primary: PrimaryLog): ReplicationReport {
    const now = this.options.clock.monotonicMs();
    const end = primary.durableEnd;
    const previous = served.sample;
    let rate = previous?.rate ?? 0;
    if (previous && now - previous.atMs >= reportIntervalMs / 2) {
      const bytes = end.sequence === previous.end.sequence
        ? end.offsetBytes - previous.end.offsetBytes : end.offsetBytes;
      rate = Math.round((Math.max(0, bytes) * 1000) / (now - previous.atMs));
    }
    if (!previous || now - previous.atMs >= reportIntervalMs / 2) {
      served.sample = { atMs: now, end, rate };
    }
    return {
      status: "primary", consistent: true, logEnd: primary.logEnd, fetched: end,
      replayed: primary.writebackPosition, fetchLagBytes: 0, replayLagBytes: 0,
      fetchRateBytesPerSecond: 0, replayRateBytesPerSecond: 0, writeRateBytesPerSecond: rate,
      source: null, fetchState: "serving", replayState: "writeback", defect: null, problem: null,
      syncPercent: null, syncEtaSeconds: null, emergency: primary.emergency === true,
      reportedMs: Math.floor(this.options.clock.nowMs()),
    };
  }

  /** Publishes when anything but the report time changed. */
  private publish(resource: string, report: ReplicationReport): void {
    // A report must not outlive this host's membership: between the membership's end and the
    // detach, a report written would survive a delete-resource as an orphan key.
    const { map, host } = this.options;
    if (map.get(keys.resourceMember(resource, host)) === undefined) return;
    const previous = this.published.get(resource);
    if (previous && sameReport(previous, report)) return;
    this.published.set(resource, report);
    this.options.map.set(keys.replication(resource, this.options.host), report);
  }

  private log(level: "info" | "warn" | "error", event: string, fields: Record<string, unknown>) {
    const flat: Record<string, string | number | boolean | undefined> = {};
    for (const [key, value] of Object.entries(fields)) {
      flat[key] = typeof value === "object" && value !== null ? JSON.stringify(value)
        : value as string | number | boolean | undefined;
    }
    this.options.log(level, event, flat);
  }

  /** Stops publishing; replicas are closed by their detach. Publishes a last report first. */
  stop(): void {
    this.publishAll();
    this.stopped = true;
    this.timer?.cancel();
    for (const session of [...this.sessions]) session.close();
    this.tail.stop();
  }
}

/**
 * True when an idle primary's report would be the one it published (nothing written, nothing
 * written back, no rate): thousands of idle primaries then cost a few comparisons each.
 */
function stillQuiet(served: Served, primary: PrimaryLog): boolean {
  const quiet = served.quiet;
  return quiet !== undefined && quiet.emergency === (primary.emergency === true) &&
    comparePositions(quiet.logEnd, primary.logEnd) === 0 &&
    comparePositions(quiet.durableEnd, primary.durableEnd) === 0 &&
    comparePositions(quiet.writeback, primary.writebackPosition) === 0;
}

/**
 * Whether two reports say the same but for `reportedMs` (compared field by field: thousands of
 * replicas' reports are compared every interval, a JSON text of each cost more than the rest).
 */
function sameReport(left: ReplicationReport, right: ReplicationReport): boolean {
  for (const key of Object.keys(right) as (keyof ReplicationReport)[]) {
    if (key !== "reportedMs" && !samePlain(left[key], right[key])) return false;
  }
  return Object.keys(left).length === Object.keys(right).length;
}

/** Equality of plain values (numbers, strings, null, plain objects and arrays of them). */
function samePlain(left: unknown, right: unknown): boolean {
  if (left === right) return true;
  if (typeof left !== "object" || typeof right !== "object" || left === null || right === null) {
    return false;
  }
  const leftRecord = left as Record<string, unknown>;
  const rightRecord = right as Record<string, unknown>;
  const names = Object.keys(rightRecord);
  if (Object.keys(leftRecord).length !== names.length) return false;
  return names.every((name) => samePlain(leftRecord[name], rightRecord[name]));
}
