/** Reconciles each resource's desired switches with what this host actually does (todo/actual). */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import type { Clock } from "../platform/types.ts";
import type { LogPosition } from "../log/position.ts";
import type { ClosedLogEnds } from "../roles/closed-log-end.ts";
import { primaryWanted } from "../roles/designation.ts";
import type { Attached, ResourceAttacher } from "./attach.ts";
import type { FormerResources } from "./former-resources.ts";
import type { Logger } from "./logger.ts";

/** What a host publishes about one resource (key resource/R/actual/HOST). */
export interface ActualState {
  readonly attached: boolean;
  readonly primary: boolean;
  /** How clients reach the exported device; "" when not exported. */
  readonly export: string;
  /** Why the last attach failed, "" when it did not. */
  readonly error: string;
  /** Clients connected to the export (0 when not exported): a handover waits for none. */
  readonly openConnections: number;
  /** What holds the kernel device (/dev/nbdN) open, in words; a handover waits for none. */
  readonly deviceHolders: readonly string[];
  /**
   * The durable end of the log when this host last stopped being primary; persisted, so a
   * restart in the middle of a handover resumes it (docs/roles.md).
   */
  readonly closedLogEnd: LogPosition | null;
  /** Primary: the end of the log its own logfiles continue (split-brain detection). */
  readonly continuedFrom: LogPosition | null;
}

/** How often a primary's connections and device holders are looked at (published on change). */
export const connectionCheckIntervalMs = 250;
/** While nothing holds the kernel device, its holders are looked at this often (a /proc scan). */
export const kernelHoldersIdleLookMs = 1000;
/**
 * A starting engine waits this long before exporting a resource it is primary of, so that a
 * newer designation (a failover while it was down) reaches it first from its peers.
 */
export const startupDesignationWaitMs = 1500;

/** Resources attached at once (start-up with thousands of resources overlaps their I/O). */
export const attachParallelMax = 16;

interface OpenState {
  readonly connections: number;
  readonly holders: readonly string[];
}

export interface Membership {
  readonly disk: string;
}

/** This host's membership of `resource`, or undefined. */
export function membershipOf(map: MetadataMap, resource: string, host: string) {
  const value = map.get(keys.resourceMember(resource, host)) as Membership | undefined;
  return typeof value?.disk === "string" ? value : undefined;
}

/** Names of every resource that exists (has a size). */
export function resourceNames(map: MetadataMap): string[] {
  return map.list("resource/").filter((entry) => entry.key.endsWith("/size"))
    .map((entry) => entry.key.split("/")[1]!);
}

export class ResourceManager {
  private readonly attached = new Map<string, { primary: boolean; handle: Attached }>();
  private running: Promise<void> | undefined;
  private again = false;
  private stopped = false;
  /** Per resource: the log end when this host stopped being its primary. */
  private readonly closedEnds = new Map<string, LogPosition>();
  /** Resources whose persisted closed log end was read in this run. */
  private readonly closedEndsLoaded = new Set<string>();
  /** Per exported resource: who had the device open when last looked at. */
  private readonly opened = new Map<string, OpenState>();
  /** Per exported resource: when its kernel device's holders were last looked at. */
  private readonly kernelLooks = new Map<string, number>();
  /** Primaries the last reconcile pass found waiting to step down (their device is open). */
  private readonly steppingDown = new Set<string>();
  private readonly startedMs: number;

  constructor(
    private readonly map: MetadataMap,
    private readonly host: string,
    private readonly attacher: ResourceAttacher,
    private readonly pathsOf: (resource: string) => { socket: string; logDirectory: string },
    private readonly clock: Clock,
    private readonly logger: Logger,
    /** Where closed log ends are kept across restarts (none: in memory only). */
    private readonly closedLogEnds?: ClosedLogEnds,
    /** Sets aside the directories of resources this host is no member of any more. */
    private readonly former?: FormerResources,
  ) {
    this.startedMs = clock.monotonicMs();
    map.onChange((entry) => {
      if (entry.key.startsWith("resource/") && !entry.key.includes("/actual/") &&
        !entry.key.includes("/replication/")) this.request();
    });
    this.watchConnections();
  }

  /** Publishes a primary's openers when they change; a waiting step-down retries. */
  private watchConnections(): void {
    if (this.stopped) return;
    this.clock.setTimer(connectionCheckIntervalMs, () => {
      void this.lookAtOpeners().finally(() => this.watchConnections());
    });
  }

  private async lookAtOpeners(): Promise<void> {
    let stepDownWaits = false;
    const due: string[] = [];
    for (const [resource, current] of this.attached) {
      if (!current.primary) continue;
      if (this.steppingDown.has(resource) || !this.nothingToLookAt(resource, current.handle)) {
        due.push(resource);
      }
    }
    for (const resource of due) {
      const current = this.attached.get(resource);
      if (this.stopped) return;
      if (!current?.primary) continue; // detached meanwhile
      // While a step-down waits, the same precise look as the step-down's own (else the two
      // looks would publish different holders by turns under a lazily unmounted device).
      const stepping = this.steppingDown.has(resource);
      await this.refreshOpeners(resource, current, stepping);
      if (stepping) stepDownWaits = true;
    }
    if (stepDownWaits) this.request();
  }

  /**
   * True when a look would find what was published: no kernel device to scan and the same
   * count of NBD clients. Most of thousands of idle primaries cost one comparison per tick.
   */
  private nothingToLookAt(resource: string, handle: Attached): boolean {
    if (handle.kernelHolders) return false;
    const before = this.opened.get(resource);
    return before !== undefined && before.connections === (handle.openConnections?.() ?? 0);
  }

  /**
   * Looks at who has `resource`'s device open (precisely when `stepping`: before a step-down),
   * publishes it when it changed and says whether anyone has.
   */
  private async refreshOpeners(
    resource: string, current: { primary: boolean; handle: Attached }, stepping: boolean,
  ): Promise<boolean> {
    const { handle } = current;
    const before = this.opened.get(resource);
    const holders = handle.kernelHolders && this.kernelLookDue(resource, before, stepping)
      ? await handle.kernelHolders(stepping) : before?.holders ?? [];
    const open = { connections: handle.openConnections?.() ?? 0, holders };
    if (this.attached.get(resource) !== current) return false; // detached meanwhile
    if (before?.connections !== open.connections ||
      before.holders.join("\n") !== open.holders.join("\n")) {
      this.opened.set(resource, open);
      this.publish(resource, this.actualOf(resource, handle, current.primary));
    }
    return open.connections > 0 || open.holders.length > 0;
  }

  private wantsPrimary(resource: string): boolean {
    return primaryWanted(this.map.get(keys.primary(resource)),
      this.map.get(keys.handover(resource)), this.host);
  }

  private actualOf(resource: string, handle: Attached | undefined, primary: boolean) {
    return {
      attached: handle !== undefined, primary, export: handle?.exportAddress ?? "", error: "",
      openConnections: handle ? this.opened.get(resource)?.connections ?? 0 : 0,
      deviceHolders: handle ? this.opened.get(resource)?.holders ?? [] : [],
      closedLogEnd: this.closedEnds.get(resource) ?? null,
      continuedFrom: (primary ? handle?.continuedFrom : undefined) ?? null,
    };
  }

  /** Asks for a reconcile pass; passes never overlap, requests during one coalesce. */
  request(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = new Promise<void>((resolve) => this.clock.setTimer(0, resolve))
      .then(() => this.reconcile())
      .finally(() => {
        this.running = undefined;
        if (this.again) {
          this.again = false;
          this.request();
        }
      });
  }

  /** Resolves once no pass is running or pending. */
  async settled(): Promise<void> {
    while (this.running) await this.running;
  }

  get attachedCount(): number {
    return this.attached.size;
  }

  private async reconcile(): Promise<void> {
    const wanted = new Map<string, { disk: string; sizeBytes: number; primary: boolean }>();
    for (const resource of resourceNames(this.map)) {
      const member = membershipOf(this.map, resource, this.host);
      if (!member) continue;
      this.former?.noteMember(resource);
      await this.loadClosedEnd(resource);
      const sizeBytes = this.map.get(keys.size(resource));
      const attach = this.map.get(keys.todo(resource, this.host, "attach")) === true;
      const primary = this.wantsPrimary(resource);
      if (attach && typeof sizeBytes === "number") {
        wanted.set(resource, { disk: member.disk, sizeBytes, primary });
      } else {
        this.publish(resource, this.actualOf(resource, undefined, primary));
      }
    }
    for (const [resource, current] of this.attached) {
      const want = wanted.get(resource);
      if (!this.stopped && want && want.primary === current.primary) {
        this.steppingDown.delete(resource);
        continue;
      }
      if (!this.stopped && want && current.primary &&
        await this.refreshOpeners(resource, current, true)) {
        // Steps down once its device is closed (watchConnections looks and asks again).
        if (this.attached.get(resource) === current) this.steppingDown.add(resource);
        continue;
      }
      await this.detach(resource);
    }
    if (this.stopped) return;
    // Detached above: a later resource of the same name must not find this one's state.
    for (const resource of await this.former?.sweep((name) => this.attached.has(name)) ?? []) {
      this.closedEnds.delete(resource);
      this.closedEndsLoaded.delete(resource);
    }
    // `wanted` was read before the awaits above: a membership that ended (its directory may
    // just have been set aside) or changed since is not attached from it; the next pass decides.
    const pending = [...wanted].filter(([resource, want]) => !this.attached.has(resource) &&
      membershipOf(this.map, resource, this.host)?.disk === want.disk &&
      !(want.primary && this.startingUp(resource)));
    for (let start = 0; start < pending.length; start += attachParallelMax) {
      const group = pending.slice(start, start + attachParallelMax);
      await Promise.all(group.map(([resource, want]) => this.attach(resource, want)));
    }
  }

  /** True (and a pass is scheduled) while a starting engine waits to learn of a newer primary. */
  private startingUp(resource: string): boolean {
    const waitedMs = this.clock.monotonicMs() - this.startedMs;
    if (waitedMs >= startupDesignationWaitMs) return false;
    const others = this.map.list(`resource/${resource}/member/`).length > 1;
    if (!others) return false;
    this.clock.setTimer(startupDesignationWaitMs - waitedMs, () => this.request());
    return true;
  }

  private async attach(
    resource: string, want: { disk: string; sizeBytes: number; primary: boolean },
  ): Promise<void> {
    try {
      const paths = this.pathsOf(resource);
      if (want.primary) {
        // Before anything can be written: a closed end that outlived this export would let a
        // later handover finish short of the log.
        this.closedEnds.delete(resource);
        await this.closedLogEnds?.remove(paths.logDirectory);
      }
      const handle = await this.attacher.attach({
        resource, host: this.host, disk: want.disk, sizeBytes: want.sizeBytes,
        primary: want.primary, socketPath: paths.socket, logDirectory: paths.logDirectory,
      });
      this.attached.set(resource, { primary: want.primary, handle });
      this.logger.log("info", "resource-attached", {
        resource, primary: want.primary, export: handle.exportAddress || undefined,
      });
      this.publish(resource, this.actualOf(resource, handle, want.primary));
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.logger.log("error", "resource-attach-failed", { resource, reason: error.message });
      this.publish(resource, {
        ...this.actualOf(resource, undefined, want.primary), error: error.message,
      });
    }
  }

  private async detach(resource: string): Promise<void> {
    const current = this.attached.get(resource);
    assert(current !== undefined, "only attached resources are detached");
    this.attached.delete(resource);
    this.opened.delete(resource);
    this.kernelLooks.delete(resource);
    this.steppingDown.delete(resource);
    await current.handle.detach();
    // After detach the log is closed: its durable end is final (a handover waits for it).
    const log = current.handle.primaryLog;
    if (current.primary && log) await this.keepClosedEnd(resource, log.durableEnd);
    this.logger.log("info", "resource-detached", { resource });
    if (membershipOf(this.map, resource, this.host)) {
      this.publish(resource, this.actualOf(resource, undefined, current.primary));
    }
  }

  /**
   * The kernel device's holders are looked at (a scan of /proc) every tick while they matter:
   * while held (to see the close at once) or while this host is to step down; otherwise every
   * `kernelHoldersIdleLookMs`. A look right before stepping down is always taken.
   */
  private kernelLookDue(resource: string, before: OpenState | undefined, stepping: boolean) {
    const nowMs = this.clock.monotonicMs();
    const lastMs = this.kernelLooks.get(resource);
    const due = stepping || lastMs === undefined || (before?.holders.length ?? 0) > 0 ||
      this.steppingDown.has(resource) || nowMs - lastMs >= kernelHoldersIdleLookMs;
    if (due) this.kernelLooks.set(resource, nowMs);
    return due;
  }

  /** Reads the persisted closed log end once per run (a restart mid-handover resumes it). */
  private async loadClosedEnd(resource: string): Promise<void> {
    if (this.closedEndsLoaded.has(resource)) return;
    this.closedEndsLoaded.add(resource);
    if (this.closedEnds.has(resource) || this.attached.get(resource)?.primary) return;
    const end = await this.closedLogEnds?.read(this.pathsOf(resource).logDirectory)
      .catch(() => undefined);
    if (end) this.closedEnds.set(resource, end);
  }

  private async keepClosedEnd(resource: string, end: LogPosition): Promise<void> {
    this.closedEnds.set(resource, end);
    this.closedEndsLoaded.add(resource);
    try {
      await this.closedLogEnds?.write(this.pathsOf(resource).logDirectory, end);
    } catch (error) {
      if (!isMarsError(error)) throw error;
      // Published all the same; only a restart before the handover ends would time it out.
      this.logger.log("error", "closed-log-end-not-persisted", {
        resource, reason: error.message,
      });
    }
  }

  private publish(resource: string, actual: ActualState): void {
    if (this.stopped) return;
    this.map.set(keys.actual(resource, this.host), actual);
  }

  /** Detaches everything (graceful stop). Actual keys keep their last published state. */
  async stop(): Promise<void> {
    await this.settled();
    this.stopped = true;
    const resources = [...this.attached.keys()];
    for (let start = 0; start < resources.length; start += attachParallelMax) {
      const group = resources.slice(start, start + attachParallelMax);
      await Promise.all(group.map((resource) => this.detach(resource)));
    }
  }
}
