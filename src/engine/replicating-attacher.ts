/** Puts replication behind the attach step: the primary's log is served, a secondary replays. */
import type { ReplicationService } from "../replication/service.ts";
import type { ResourceAttacher } from "./attach.ts";

export function replicatingAttacher(
  inner: ResourceAttacher,
  replication: Pick<ReplicationService, "attachPrimary" | "attachSecondary">,
): ResourceAttacher {
  return {
    async attach(spec) {
      const handle = await inner.attach(spec);
      if (spec.primary) {
        const stopServing = handle.primaryLog
          ? replication.attachPrimary(spec.resource, spec.logDirectory, handle.primaryLog)
          : () => {};
        return {
          exportAddress: handle.exportAddress,
          ...(handle.primaryLog ? { primaryLog: handle.primaryLog } : {}),
          ...(handle.openConnections ? { openConnections: handle.openConnections } : {}),
          ...(handle.kernelHolders ? { kernelHolders: handle.kernelHolders } : {}),
          ...(handle.continuedFrom ? { continuedFrom: handle.continuedFrom } : {}),
          ...(handle.grow ? { grow: handle.grow } : {}),
          async detach() {
            stopServing();
            await handle.detach();
          },
        };
      }
      let stopReplica: () => Promise<void>;
      try {
        stopReplica = await replication.attachSecondary(spec.resource, spec.disk,
          spec.logDirectory);
      } catch (error) {
        await handle.detach();
        throw error;
      }
      return {
        exportAddress: "",
        async detach() {
          await stopReplica();
          await handle.detach();
        },
      };
    },
  };
}
