/** The engine (`mars run`): one per home, it joins the cluster and reconciles every resource. */
import { MarsError } from "../lib/errors.ts";
import type {
  Clock, FileLocks, HeldLock, Network, Random, Storage,
} from "../platform/types.ts";
import { Home, homeFiles } from "../store/home.ts";
import type { ResourceAttacher } from "./attach.ts";
import {
  ClusterNode, defaultTiming, parseListen, type ClusterTiming,
} from "./cluster-node.ts";
import { ControlServer } from "./control.ts";
import type { Logger } from "./logger.ts";
import { ResourceManager, resourceNames } from "./resources.ts";
import { FormerResources } from "./former-resources.ts";
import { ClosedLogEnds } from "../roles/closed-log-end.ts";
import { SplitBrainRepair } from "../roles/split-brain-repair.ts";
import { ReplicationService } from "../replication/service.ts";
import { keys } from "../cluster/keys.ts";
import type { Address } from "../platform/types.ts";
import { replicatingAttacher } from "./replicating-attacher.ts";
import { SyncService } from "../sync/service.ts";
import { syncingAttacher } from "./syncing-attacher.ts";
import { DiskSizes } from "./disk-sizes.ts";
import {
  defaultLifetimeSettings, LifetimeService, type LifetimeSettings,
} from "../retention/service.ts";

export interface EngineEffects {
  readonly clock: Clock;
  readonly random: Random;
  readonly storage: Storage;
  readonly network: Network;
  readonly locks: FileLocks;
}

export interface EngineOptions {
  readonly homePath: string;
  readonly effects: EngineEffects;
  readonly logger: Logger;
  readonly attacher: ResourceAttacher;
  readonly timing?: ClusterTiming;
  /** Free-space thresholds and retention limits (docs/log-lifetime.md). */
  readonly lifetime?: LifetimeSettings;
  /** Bytes per second each replica may fetch; 0 or absent = unlimited. */
  readonly fetchRateBytesPerSecondMax?: number;
}

export class Engine {
  private constructor(
    readonly home: Home,
    readonly node: ClusterNode,
    readonly resources: ResourceManager,
    readonly replication: ReplicationService,
    readonly sync: SyncService,
    readonly lifetime: LifetimeService,
    private readonly repair: SplitBrainRepair,
    private readonly control: ControlServer,
    private readonly lock: HeldLock,
    private readonly logger: Logger,
  ) {}

  /** Takes the home's lock, loads its state, listens for peers and admin commands. */
  static async start(options: EngineOptions): Promise<Engine> {
    const { effects, logger } = options;
    const home = new Home(options.homePath, effects.storage, effects.locks);
    await home.requireInitialised();
    const lock = await home.tryLock();
    if (!lock) {
      throw new MarsError("home-locked", `another engine already runs on ${options.homePath}`);
    }
    try {
      const identity = await home.readIdentity();
      const { secret } = await home.readSecret();
      const node = new ClusterNode(identity, secret, home, effects, logger,
        options.timing ?? defaultTiming);
      await node.load();
      const replication = new ReplicationService({
        map: node.map, host: identity.host, storage: effects.storage, clock: effects.clock,
        network: effects.network, context: node.context,
        addressOf: (host) => addressOf(node, host),
        fetchRateBytesPerSecondMax: options.fetchRateBytesPerSecondMax ?? 0,
        log: (level, event, fields) => logger.log(level, event, fields),
      });
      node.logSessions = (session) => replication.serve(session);
      const sync = new SyncService({
        map: node.map, host: identity.host, storage: effects.storage, clock: effects.clock,
        network: effects.network, context: node.context, replication,
        addressOf: (host) => addressOf(node, host),
        log: (level, event, fields) => logger.log(level, event, fields),
      });
      node.syncSessions = (session) => sync.serve(session);
      const lifetime = new LifetimeService({
        map: node.map, host: identity.host, storage: effects.storage, clock: effects.clock,
        homePath: options.homePath, settings: options.lifetime ?? defaultLifetimeSettings,
        replication, log: (level, event, fields) => logger.log(level, event, fields),
        setAside: {
          entries: () => home.setAsideEntries(),
          remove: (path) => home.removeSetAside(path),
        },
      });
      // A secondary syncs (when due) before its replica replays; a primary serves its view.
      const replicating = replicatingAttacher(syncingAttacher(options.attacher, sync, lifetime), {
        attachPrimary: (...args) => replication.attachPrimary(...args),
        attachSecondary: async (resource, disk, directory) => {
          const stopWatching = lifetime.attachSecondary(resource, directory);
          const stop = await sync.attachSecondary(resource, disk, directory);
          return async () => {
            stopWatching();
            await stop();
          };
        },
      });
      // Every attach publishes this host's disk size; a primary grows with the resource.
      const attacher = new DiskSizes(node.map, identity.host, effects.storage, logger)
        .attacher(replicating);
      const resources = new ResourceManager(node.map, identity.host, attacher,
        (resource) => ({
          socket: `${home.resourceDirectory(resource)}.nbd.sock`,
          logDirectory: home.resourceDirectory(resource),
        }), effects.clock, logger, new ClosedLogEnds(effects.storage, identity.host),
        new FormerResources(node.map, identity.host,
          (resource, nowMs) => home.setAsideResource(resource, nowMs), effects.clock, logger));
      const repair = new SplitBrainRepair({
        map: node.map, host: identity.host, clock: effects.clock, storage: effects.storage,
        directoryOf: (resource) => home.resourceDirectory(resource),
        fetcherOf: (resource) => replication.replica(resource)?.fetcher,
        resourceNames: () => resourceNames(node.map),
        log: (level, event, fields) => logger.log(level, event, fields),
      });
      repair.start();
      const control = new ControlServer(node, effects.network, logger, () => resources.request(),
        (names) => sync.logEnds(names ?? resourceNames(node.map), replication.positions()));
      await effects.storage.files.remove(home.file(homeFiles.control));
      await control.start(home.file(homeFiles.control));
      const address = await node.start();
      resources.request();
      await resources.settled();
      const port = address.kind === "tcp" ? address.port : 0;
      logger.log("info", "engine-started", {
        host: identity.host, cluster: identity.cluster, listen: identity.listen, port,
        resources: resources.attachedCount, keys: node.map.size,
      });
      return new Engine(home, node, resources, replication, sync, lifetime, repair, control,
        lock, logger);
    } catch (error) {
      await lock.release();
      throw error;
    }
  }

  /** Graceful stop: no new admin requests, detach exports, persist the map, release the home. */
  async stop(reason: string): Promise<void> {
    this.logger.log("info", "engine-stopping", { reason });
    this.control.stop();
    this.repair.stop();
    await this.resources.stop();
    this.replication.stop();
    this.sync.stop();
    this.lifetime.stop();
    await this.node.stop();
    await this.lock.release();
    this.logger.log("info", "engine-stopped", {});
  }
}

/** Where `host`'s engine listens, from its member key (undefined when unknown or malformed). */
function addressOf(node: ClusterNode, host: string): Address | undefined {
  const member = node.map.get(keys.member(host)) as { address?: unknown } | undefined;
  if (typeof member?.address !== "string") return undefined;
  try {
    return parseListen(member.address);
  } catch {
    return undefined;
  }
}
