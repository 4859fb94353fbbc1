/** What admin commands share: the home, its map (live from the engine, or from disk), writes. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { checkName, keys } from "../cluster/keys.ts";
import { LamportClock } from "../cluster/lamport.ts";
import { MetadataMap, toWire } from "../cluster/metadata-map.ts";
import type { ControlState, KeyWrite } from "../engine/control.ts";
import type { EngineEffects } from "../engine/engine.ts";
import { resourceNames } from "../engine/resources.ts";
import type { HeldLock } from "../platform/types.ts";
import { Home, homeFiles, homeFormat, type Identity } from "../store/home.ts";
import { askEngine, engineState } from "./control-client.ts";
import { realEffects } from "./effects.ts";
import type { GlobalOptions } from "./global-args.ts";

export const engineDownNote = "the engine is not running on this host: it will act on start";
/** Keys one admin command writes at most (delete-resource of a resource with many members). */
const changesPerCommandMax = 100_000;

export class AdminSession {
  private constructor(
    readonly home: Home,
    readonly identity: Identity,
    readonly map: MetadataMap,
    readonly effects: EngineEffects,
    /** Held while the engine is down: this command is then the home's only writer. */
    private readonly lock: HeldLock | undefined,
    readonly state: ControlState | undefined,
    private readonly peersProgress: Record<string, unknown>,
  ) {}

  get engineRunning(): boolean {
    return this.lock === undefined;
  }

  get host(): string {
    return this.identity.host;
  }

  /**
   * With `scope` (key prefixes) a running engine sends only those keys: a command that reads
   * a few keys of a map with thousands of resources need not copy all of it.
   */
  static async open(options: GlobalOptions, scope?: readonly string[]): Promise<AdminSession> {
    const effects = realEffects();
    const home = new Home(options.home, effects.storage, effects.locks);
    await home.requireInitialised();
    const identity = await home.readIdentity();
    const lamport = new LamportClock(() => effects.clock.nowMs());
    const map = new MetadataMap(identity.host, lamport);
    const lock = await lockBriefly(home);
    if (!lock) {
      const state = await engineState(effects.network, home.file(homeFiles.control), scope);
      const seqHigh = state.entries.reduce((high, entry) => Math.max(high, entry.seq), 0);
      map.restore(state.entries, seqHigh, state.held);
      return new AdminSession(home, identity, map, effects, undefined, state, {});
    }
    try {
      const snapshot = await home.readMetadata();
      if (snapshot) {
        lamport.observe(snapshot.lamportTime);
        map.restore(snapshot.entries, snapshot.seqHigh, snapshot.held);
      }
      return new AdminSession(home, identity, map, effects, lock, undefined,
        { ...snapshot?.peers });
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /** Records desired state: through the engine when it runs, else straight into the home. */
  async write(writes: readonly KeyWrite[]): Promise<void> {
    if (writes.length === 0) return;
    if (this.engineRunning) {
      await askEngine(this.effects.network, this.home.file(homeFiles.control),
        { op: "write", writes });
      return;
    }
    const savedThroughSeq = this.map.seqHigh;
    for (const write of writes) {
      if (write.value === undefined) this.map.delete(write.key);
      else this.map.set(write.key, write.value);
    }
    // Appended to the home's journal: a command costs its own changes, not the whole map.
    const changes = {
      lamportTime: this.map.clock.time, seqHigh: this.map.seqHigh,
      peers: this.peersProgress as never, held: this.map.heldEntries(),
      entries: this.map.changesSince(savedThroughSeq, changesPerCommandMax).entries,
    };
    assert(changes.entries.length < changesPerCommandMax, "a command writes a few keys");
    await this.home.saveMetadata(changes, () => ({
      format: homeFormat, lamportTime: changes.lamportTime, seqHigh: changes.seqHigh,
      entries: [...this.map.all()].map(toWire), peers: changes.peers, held: changes.held,
    }));
  }

  async close(): Promise<void> {
    await this.lock?.release();
  }

  /** Fresh state from the running engine (for commands that wait). */
  async refresh(): Promise<ControlState> {
    assert(this.engineRunning, "only a running engine is asked");
    return engineState(this.effects.network, this.home.file(homeFiles.control));
  }

  /** `all`, one name or a comma list → existing resource names (unknown ones are errors). */
  resources(argument: string): string[] {
    const existing = resourceNames(this.map);
    if (argument === "all") return existing;
    const names = argument.split(",").map((name) => checkName("resource", name.trim()));
    for (const name of names) this.requireResource(name);
    return names;
  }

  /** As `resources`, but `all` means every resource `host` is a member of (as with marsadm). */
  memberResources(argument: string, host: string): string[] {
    if (argument !== "all") return this.resources(argument);
    return resourceNames(this.map).filter((name) => this.membersOf(name).includes(host));
  }

  requireResource(resource: string): void {
    if (this.map.get(keys.size(resource)) === undefined) {
      throw new MarsError("unknown-resource", `no resource '${resource}' in this cluster`);
    }
  }

  /** Hosts that are members of `resource`. */
  membersOf(resource: string): string[] {
    const prefix = `resource/${resource}/member/`;
    return this.map.list(prefix).map((entry) => entry.key.slice(prefix.length));
  }
}

/** Admin commands and the engine exclude each other; another admin may hold it a moment. */
async function lockBriefly(home: Home): Promise<HeldLock | undefined> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const lock = await home.tryLock();
    if (lock) return lock;
    const socket = await realEffects().storage.files.status(home.file(homeFiles.control));
    if (socket) return undefined;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  return undefined;
}

/** Runs `action` with an admin session, always closing it. */
export async function withAdmin<T>(
  options: GlobalOptions, action: (admin: AdminSession) => Promise<T>,
  scope?: readonly string[],
): Promise<T> {
  const admin = await AdminSession.open(options, scope);
  try {
    return await action(admin);
  } finally {
    await admin.close();
  }
}
