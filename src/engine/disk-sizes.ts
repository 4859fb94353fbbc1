/** `mars resize` in the engine: this host's disk sizes, published; attached primaries grown. */
import { isMarsError } from "../lib/errors.ts";
import { keys } from "../cluster/keys.ts";
import { compareStamps, type Stamp } from "../cluster/lamport.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import type { Storage } from "../platform/types.ts";
import type { Attached, ResourceAttacher } from "./attach.ts";
import type { Logger } from "./logger.ts";
import { membershipOf } from "./resources.ts";

/** An attached primary that can grow: what it exports, and the size entry that asked for it. */
interface Primary {
  readonly handle: Attached;
  exportedBytes: number;
  sizeStamp: Stamp;
}

/** What a host publishes about its disk of one resource (key resource/R/disk/HOST). */
export interface DiskReport {
  /** The backing disk's size when last measured (at attach, or when asked). */
  readonly diskBytes: number;
  /** The measure request (`resource/R/measure-disks`) this measurement answers, or "". */
  readonly request: string;
  /** Primary: the size its export serves; null while it does not export. */
  readonly exportedBytes: number | null;
  /** Why the export did not (fully) follow the last growth, "" when it did. */
  readonly problem: string;
}

/** The own disk report of `host` for `resource`, or undefined. */
export function diskReportOf(
  get: (key: string) => unknown, resource: string, host: string,
): DiskReport | undefined {
  const value = get(keys.disk(resource, host)) as DiskReport | undefined;
  return typeof value?.diskBytes === "number" ? value : undefined;
}

/**
 * Watches the size key and measure requests. A primary attached through `attacher` grows
 * its export when the resource's size grows (in order, one growth at a time per resource);
 * a measure request makes this host measure its disk and publish it, as every attach does.
 */
export class DiskSizes {
  /** Attached primaries that can grow, by resource, and the size each exports. */
  private readonly primaries = new Map<string, Primary>();
  private readonly growing = new Map<string, Promise<void>>();

  constructor(
    private readonly map: MetadataMap,
    private readonly host: string,
    private readonly storage: Storage,
    private readonly logger: Logger,
  ) {
    map.onChange((entry) => {
      // Called for every change (reports every 500 ms): most keys end in neither.
      if (!entry.key.endsWith("/size") && !entry.key.endsWith("/measure-disks")) return;
      const parts = entry.key.split("/");
      if (parts.length !== 3 || parts[0] !== "resource") return;
      const resource = parts[1]!;
      const value = map.get(entry.key);
      if (parts[2] === "size" && typeof value === "number") {
        this.grow(resource, value, entry.stamp);
        this.keepSizeUp(resource);
      }
      if (parts[2] === "measure-disks" && typeof value === "string") {
        void this.publish(resource, { request: value });
      }
    });
  }

  /** Wraps `inner`: primaries that can grow are tracked, every attach publishes the disk. */
  attacher(inner: ResourceAttacher): ResourceAttacher {
    return {
      attach: async (spec) => {
        const handle = await inner.attach(spec);
        if (!spec.primary || !handle.grow) {
          void this.publish(spec.resource, { problem: "" });
          return handle;
        }
        const size = this.map.entry(keys.size(spec.resource));
        const primary: Primary = { handle, exportedBytes: spec.sizeBytes,
          sizeStamp: size?.stamp ?? { time: 0, host: "" } };
        this.primaries.set(spec.resource, primary);
        void this.publish(spec.resource, { problem: "" });
        // The size may have grown while this attach ran.
        if (size && typeof size.value === "number" && size.value > spec.sizeBytes) {
          this.grow(spec.resource, size.value, size.stamp);
        }
        return {
          ...handle,
          detach: async () => {
            if (this.primaries.get(spec.resource) === primary) {
              this.primaries.delete(spec.resource);
            }
            await this.growing.get(spec.resource);
            await handle.detach();
          },
        };
      },
    };
  }

  /** Grows `resource`'s export, after any growth still under way. */
  private grow(resource: string, sizeBytes: number, stamp: Stamp): void {
    const primary = this.primaries.get(resource);
    if (!primary) return;
    const previous = this.growing.get(resource) ?? Promise.resolve();
    const next = previous.then(() => this.growNow(resource, primary, sizeBytes, stamp));
    this.growing.set(resource, next);
    void next.finally(() => {
      if (this.growing.get(resource) === next) this.growing.delete(resource);
    });
  }

  private async growNow(
    resource: string, primary: Primary, sizeBytes: number, stamp: Stamp,
  ): Promise<void> {
    const grow = primary.handle.grow;
    if (this.primaries.get(resource) !== primary || !grow) return;
    if (sizeBytes <= primary.exportedBytes) return;
    try {
      const problem = await grow(sizeBytes);
      primary.exportedBytes = sizeBytes;
      primary.sizeStamp = stamp;
      this.logger.log(problem ? "warn" : "info", "resource-grown",
        { resource, sizeBytes, ...(problem ? { problem } : {}) });
      this.keepSizeUp(resource);
      await this.publish(resource, { problem });
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.logger.log("error", "resource-grow-failed", { resource, sizeBytes,
        reason: error.message });
      await this.publish(resource, { problem: error.message });
    }
  }

  /**
   * The size key only grows, but it is last-writer-wins: two resizes at once (each planned
   * against the old size) leave the later write, even when it is the smaller. Clients of this
   * primary's export may already use the range up to what it exports, and a restart attaches
   * with the size key: so a key below the export is written back up to it. Only when its
   * writer was a member before the size exported was written: a newer membership means a
   * resource deleted and created again under the name (this host not told yet), whose size
   * is its own.
   */
  private keepSizeUp(resource: string): void {
    // Not from inside the map's change listeners: the write is a change of its own.
    void Promise.resolve().then(() => this.keepSizeUpNow(resource));
  }

  private keepSizeUpNow(resource: string): void {
    const primary = this.primaries.get(resource);
    const size = this.map.entry(keys.size(resource));
    const sizeBytes = size?.value;
    if (!primary || !size || typeof sizeBytes !== "number" ||
      sizeBytes >= primary.exportedBytes) return;
    if (!membershipOf(this.map, resource, this.host)) return;
    const writer = this.map.entry(keys.resourceMember(resource, size.stamp.host));
    if (writer?.value === undefined || compareStamps(writer.stamp, primary.sizeStamp) > 0) return;
    this.logger.log("warn", "resource-size-kept", {
      resource, sizeBytes, exportedBytes: primary.exportedBytes,
    });
    try {
      this.map.set(keys.size(resource), primary.exportedBytes);
    } catch (error) {
      if (!isMarsError(error)) throw error;
      this.logger.log("error", "resource-size-kept-failed", { resource, reason: error.message });
    }
  }

  /**
   * Measures this host's disk of `resource` and publishes it with `changes` and the size its
   * export serves now (null when it does not export), if it is a member.
   */
  private async publish(
    resource: string, changes: { request?: string; problem?: string },
  ): Promise<void> {
    const member = membershipOf(this.map, resource, this.host);
    if (!member) return;
    const status = await this.storage.files.status(member.disk).catch(() => undefined);
    // The membership may have ended meanwhile: a report must not outlive it.
    if (!membershipOf(this.map, resource, this.host)) return;
    const before = diskReportOf((key) => this.map.get(key), resource, this.host);
    const report: DiskReport = {
      diskBytes: status?.sizeBytes ?? before?.diskBytes ?? 0,
      request: changes.request ?? before?.request ?? "",
      exportedBytes: this.primaries.get(resource)?.exportedBytes ?? null,
      problem: changes.problem ?? before?.problem ?? "",
    };
    if (JSON.stringify(report) === JSON.stringify(before)) return;
    this.map.set(keys.disk(resource, this.host), report);
  }
}
