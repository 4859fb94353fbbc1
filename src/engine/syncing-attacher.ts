/** Puts full sync and log lifetime behind the attach step (primary: serve, watch space). */
import type { LifetimeService } from "../retention/service.ts";
import type { SyncService } from "../sync/service.ts";
import type { ResourceAttacher } from "./attach.ts";

export function syncingAttacher(
  inner: ResourceAttacher, sync: SyncService, lifetime: LifetimeService,
): ResourceAttacher {
  return {
    async attach(spec) {
      const handle = await inner.attach(spec);
      if (!spec.primary || !handle.primaryDevice || !handle.primaryLog) return handle;
      const stopServing = sync.attachPrimary(spec.resource, handle.primaryDevice,
        handle.primaryLog);
      const stopWatching = handle.emergency
        ? lifetime.attachPrimary(spec.resource, spec.logDirectory, handle.emergency) : () => {};
      return {
        ...handle,
        async detach() {
          stopWatching();
          stopServing();
          await handle.detach();
        },
      };
    },
  };
}
