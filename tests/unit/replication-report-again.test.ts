// A resource deleted and created again under its name gets its replication report published anew.
import { expect, test } from "bun:test";
import { keys } from "../../src/cluster/keys.ts";
import { LamportClock } from "../../src/cluster/lamport.ts";
import { MetadataMap } from "../../src/cluster/metadata-map.ts";
import { seededRandom } from "../../src/platform/random.ts";
import { ReplicationService } from "../../src/replication/service.ts";
import { SimulatedClock } from "../support/simulated-clock.ts";
import { SimulatedStreamNetwork } from "../support/simulated-network.ts";
import { SimulatedStorage } from "../support/simulated-storage.ts";

test("a primary attached again after its report was deleted publishes it again", async () => {
  const clock = new SimulatedClock();
  const lamport = new LamportClock(() => clock.nowMs());
  const map = new MetadataMap("alpha", lamport);
  // Reports are published only while this host is a member.
  map.set("resource/r1/member/alpha", { disk: "/disk" });
  const service = new ReplicationService({
    map, host: "alpha", storage: new SimulatedStorage(seededRandom(1)), clock,
    network: new SimulatedStreamNetwork(clock).view("alpha"),
    context: { credentials: { cluster: "c1", host: "alpha", secret: new Uint8Array(32) },
      random: seededRandom(2), clock, lamport },
    addressOf: () => undefined, log: () => {},
  });
  const start = { sequence: 1, offsetBytes: 256 };
  const fresh = { logEnd: start, durableEnd: start, writebackPosition: start };
  const key = keys.replication("r1", "alpha");
  const detach = service.attachPrimary("r1", "/home/resources/r1", fresh);
  clock.advance(1000);
  expect(map.get(key)).toMatchObject({ status: "primary", replayed: start });
  detach();
  map.delete(key); // delete-resource deletes every key of the resource
  service.attachPrimary("r1", "/home/resources/r1", fresh); // created again, as fresh
  clock.advance(1000);
  expect(map.get(key)).toMatchObject({ status: "primary", replayed: start });
  service.stop();
});
