/** Reconciles each resource's desired switches with what this host actually does (todo/actual). */
import { assert } from "../lib/assert.ts";
import { isMarsError } from "../lib/errors.ts";
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import type { Clock } from "../platform/types.ts";
import type { Attached, ResourceAttacher } from "./attach.ts";
import type { Logger } from "./logger.ts";

/** What a host publishes about one resource (key resource/R/actual/HOST). */
export interface ActualState {
  readonly attached: boolean;
  readonly primary: boolean;
  /** How clients reach the exported device; "" when not exported. */
  readonly export: string;
  /** Why the last attach failed, "" when it did not. */
  readonly error: string;
}

/** Resources attached at once (start-up with thousands of resources overlaps their I/O). */
export const attachParallelMax = 16;

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

  constructor(
    private readonly map: MetadataMap,
    private readonly host: string,
    private readonly attacher: ResourceAttacher,
    private readonly pathsOf: (resource: string) => { socket: string; logDirectory: string },
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {
    map.onChange((entry) => {
      if (entry.key.startsWith("resource/") && !entry.key.includes("/actual/") &&
        !entry.key.includes("/replication/")) this.request();
    });
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
      const sizeBytes = this.map.get(keys.size(resource));
      const attach = this.map.get(keys.todo(resource, this.host, "attach")) === true;
      const primary = this.map.get(keys.primary(resource)) === this.host;
      if (attach && typeof sizeBytes === "number") {
        wanted.set(resource, { disk: member.disk, sizeBytes, primary });
      } else {
        this.publish(resource, { attached: false, primary, export: "", error: "" });
      }
    }
    for (const [resource, current] of this.attached) {
      const want = wanted.get(resource);
      if (!this.stopped && want && want.primary === current.primary) continue;
      await this.detach(resource);
    }
    if (this.stopped) return;
    const pending = [...wanted].filter(([resource]) => !this.attached.has(resource));
    for (let start = 0; start < pending.length; start += attachParallelMax) {
      const group = pending.slice(start, start + attachParallelMax);
      await Promise.all(group.map(([resource, want]) => this.attach(resource, want)));
    }
  }

  private async attach(
    resource: string, want: { disk: string; sizeBytes: number; primary: boolean },
  ): Promise<void> {
    try {
      const paths = this.pathsOf(resource);
      const handle = await this.attacher.attach({
        resource, host: this.host, disk: want.disk, sizeBytes: want.sizeBytes,
        primary: want.primary, socketPath: paths.socket, logDirectory: paths.logDirectory,
      });
      this.attached.set(resource, { primary: want.primary, handle });
      this.logger.log("info", "resource-attached", {
        resource, primary: want.primary, export: handle.exportAddress || undefined,
      });
      this.publish(resource, {
        attached: true, primary: want.primary, export: handle.exportAddress, error: "",
      });
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.logger.log("error", "resource-attach-failed", { resource, reason: error.message });
      this.publish(resource, {
        attached: false, primary: want.primary, export: "", error: error.message,
      });
    }
  }

  private async detach(resource: string): Promise<void> {
    const current = this.attached.get(resource);
    assert(current !== undefined, "only attached resources are detached");
    this.attached.delete(resource);
    await current.handle.detach();
    this.logger.log("info", "resource-detached", { resource });
    if (membershipOf(this.map, resource, this.host)) {
      this.publish(resource, { attached: false, primary: current.primary, export: "", error: "" });
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
