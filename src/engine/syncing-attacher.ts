/** Puts the full sync's source behind the attach step: a primary serves its device view. */
import type { SyncService } from "../sync/service.ts";
import type { ResourceAttacher } from "./attach.ts";

export function syncingAttacher(inner: ResourceAttacher, sync: SyncService): ResourceAttacher {
  return {
    async attach(spec) {
      const handle = await inner.attach(spec);
      if (!spec.primary || !handle.primaryDevice || !handle.primaryLog) return handle;
      const stopServing = sync.attachPrimary(spec.resource, handle.primaryDevice,
        handle.primaryLog);
      return {
        ...handle,
        async detach() {
          stopServing();
          await handle.detach();
        },
      };
    },
  };
}
