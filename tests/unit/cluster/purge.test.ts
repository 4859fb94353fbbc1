// Tombstone purging goes on after a member left or was removed (it waits for members only).
import { expect, test } from "bun:test";
import { keys } from "../../../src/cluster/keys.ts";
import { LamportClock } from "../../../src/cluster/lamport.ts";
import { MetadataMap } from "../../../src/cluster/metadata-map.ts";
import { MetadataSync } from "../../../src/cluster/sync.ts";

interface Host {
  readonly name: string;
  readonly map: MetadataMap;
  readonly sync: MetadataSync;
}

let wallMs = 1_000;

function host(name: string): Host {
  const map = new MetadataMap(name, new LamportClock(() => wallMs));
  return { name, map, sync: new MetadataSync(map, `incarnation-${name}`,
    { tombstoneRetentionMs: 0 }) };
}

/** `to` pulls everything `from` has (a heartbeat batch included). */
function pull(to: Host, from: Host): void {
  wallMs += 1;
  for (;;) {
    const { incarnation, afterSeq } = to.sync.pullFrom(from.name);
    const batch = from.sync.batchAfter(afterSeq, incarnation);
    expect(to.sync.receive(from.name, batch)).toBe(true);
    if (batch.throughSeq >= batch.seqHigh) return;
  }
}

function rounds(hosts: Host[], count: number): void {
  for (let round = 0; round < count; round++) {
    for (const to of hosts) for (const from of hosts) if (to !== from) pull(to, from);
    for (const each of hosts) if (each.sync.holdsTombstones()) each.sync.publishCaughtUp();
    for (const each of hosts) each.sync.purgeTombstones();
  }
}

test("a tombstone written by a host removed from the cluster is purged by the rest", () => {
  const [alpha, beta, xray] = [host("alpha"), host("beta"), host("xray")];
  const everyone = [alpha, beta, xray];
  for (const each of everyone) each.map.set(keys.member(each.name), { address: each.name });
  rounds(everyone, 2);
  xray.map.set(keys.user("note"), "hello");
  rounds(everyone, 1);
  // xray deletes the note; only alpha hears it from xray before xray dies.
  xray.map.delete(keys.user("note"));
  pull(alpha, xray);
  // The operator removes xray (leave-cluster --host xray --force on alpha).
  alpha.map.delete(keys.member("xray"));
  const survivors = [alpha, beta];
  rounds(survivors, 4);
  for (const each of survivors) {
    expect(each.map.entry(keys.user("note"))).toBeUndefined();
    expect(each.map.entry(keys.member("xray"))).toBeUndefined();
    expect(each.sync.holdsTombstones()).toBe(false);
  }
});

test("a member that is down blocks purging until it is removed", () => {
  const [alpha, beta, gamma] = [host("alpha"), host("beta"), host("gamma")];
  const everyone = [alpha, beta, gamma];
  for (const each of everyone) each.map.set(keys.member(each.name), { address: each.name });
  rounds(everyone, 2);
  alpha.map.set(keys.user("note"), 1);
  rounds(everyone, 1);
  alpha.map.delete(keys.user("note"));
  rounds([alpha, beta], 4); // gamma is down
  expect(alpha.map.entry(keys.user("note"))?.value).toBeUndefined();
  expect(alpha.map.entry(keys.user("note"))).toBeDefined();
  beta.map.delete(keys.member("gamma"));
  rounds([alpha, beta], 4);
  for (const each of [alpha, beta]) {
    expect(each.map.entry(keys.user("note"))).toBeUndefined();
    expect(each.sync.holdsTombstones()).toBe(false);
  }
});
