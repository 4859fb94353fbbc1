/** Sets aside the local state of resources this host stopped being a member of (left, deleted). */
import { isMarsError } from "../lib/errors.ts";
import { keys } from "../cluster/keys.ts";
import type { MetadataMap } from "../cluster/metadata-map.ts";
import type { Clock } from "../platform/types.ts";
import type { Logger } from "./logger.ts";

/** Moves a resource's directory aside; returns where it went (undefined: there was none). */
export type SetAside = (resource: string, nowMs: number) => Promise<string | undefined>;

/**
 * Remembers every resource this host was seen a member of in this run. Once that membership is
 * gone (leave-resource, a forced removal, delete-resource) and the resource is detached, its
 * directory (logfiles, replay position, sync cursor, closed log end) moves to HOME/deleted/:
 * a resource created or joined later under the same name starts empty. Only a membership seen
 * to end counts, so a map not loaded yet (or lost) never sets anything aside.
 */
export class FormerResources {
  private readonly members = new Set<string>();

  constructor(
    private readonly map: MetadataMap,
    private readonly host: string,
    private readonly setAside: SetAside,
    private readonly clock: Clock,
    private readonly logger: Logger,
  ) {}

  /** This host is a member of `resource` now. */
  noteMember(resource: string): void {
    this.members.add(resource);
  }

  /**
   * Sets aside the directories of resources whose membership ended and that are not attached;
   * returns those resources (their in-memory state goes too). A failure is logged and retried
   * on the next pass.
   */
  async sweep(attached: (resource: string) => boolean): Promise<string[]> {
    const former: string[] = [];
    for (const resource of [...this.members]) {
      if (this.map.get(keys.resourceMember(resource, this.host)) !== undefined) continue;
      if (attached(resource)) continue;
      try {
        const path = await this.setAside(resource, this.clock.nowMs());
        if (path) this.logger.log("warn", "resource-set-aside", { resource, path });
      } catch (error) {
        if (!isMarsError(error)) throw error;
        this.logger.log("error", "resource-set-aside-failed", { resource, reason: error.message });
        continue;
      }
      this.members.delete(resource);
      former.push(resource);
    }
    return former;
  }
}
