// Setting aside the directory of a resource this host left, seen from the reconcile pass.
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import type { Attached, AttachSpec, ResourceAttacher } from "../../../src/engine/attach.ts";
import { FormerResources } from "../../../src/engine/former-resources.ts";
import { connectionCheckIntervalMs, ResourceManager } from "../../../src/engine/resources.ts";
import { SimulatedClock } from "../../support/simulated-clock.ts";

async function settle(clock: SimulatedClock, rounds = 12): Promise<void> {
  for (let round = 0; round < rounds; round++) {
    clock.advance(connectionCheckIntervalMs);
    for (let tick = 0; tick < 50; tick++) await Promise.resolve();
    await Bun.sleep(1);
  }
}

test("a membership that ends while a pass runs: the resource is set aside and not attached " +
  "from the pass's stale wish (a fresh directory would start a full sync onto a left disk)",
async () => {
  const clock = new SimulatedClock();
  const map = new MetadataMap("alpha", new LamportClock(() => 1000));
  let time = 10;
  const remote = (key: string, value: unknown, deleted = false) =>
    map.apply({ key, ...(deleted ? { deleted } : { value }), time: time++, host: "beta",
      seq: 0 });
  for (const resource of ["q", "r"]) {
    remote(keys.resourceMember(resource, "beta"), { disk: "/b" });
    map.set(keys.resourceMember(resource, "alpha"), { disk: `/${resource}` });
    remote(keys.size(resource), 1 << 20);
    remote(keys.primary(resource), "beta");
  }
  map.set(keys.todo("q", "alpha", "attach"), true);
  const attaches: string[] = [];
  let releaseDetach: () => void = () => {};
  const slowDetach = new Promise<void>((resolve) => { releaseDetach = resolve; });
  const attacher: ResourceAttacher = {
    async attach(spec: AttachSpec): Promise<Attached> {
      attaches.push(spec.resource);
      return { exportAddress: "", detach: () => slowDetach };
    },
  };
  const asideOf: string[] = [];
  const former = new FormerResources(map, "alpha", async (resource) => {
    asideOf.push(resource);
    return `/home/deleted/${resource}`;
  }, clock, { log: () => {} });
  const manager = new ResourceManager(map, "alpha", attacher,
    (resource) => ({ socket: `/${resource}.sock`, logDirectory: `/home/${resource}` }), clock,
    { log: () => {} }, undefined, former);
  manager.request();
  await settle(clock);
  expect(attaches).toEqual(["q"]);

  // alpha is to attach r, and leaves q: the pass detaches q (slowly) ...
  map.set(keys.todo("r", "alpha", "attach"), true);
  map.delete(keys.resourceMember("q", "alpha"));
  await settle(clock, 3);
  // ... and meanwhile beta removes alpha from r.
  time = 1_000_000;
  remote(keys.resourceMember("r", "alpha"), undefined, true);
  releaseDetach();
  await settle(clock);
  expect(asideOf.sort()).toEqual(["q", "r"]);
  expect(attaches).toEqual(["q"]);
  await manager.stop();
});
