/** The home directory: where each piece of local state lives, and how it is read and written. */
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import { decodeCbor, encodeCbor } from "../platform/cbor.ts";
import type { FileLocks, HeldLock, Storage } from "../platform/types.ts";
import type { WireEntry } from "../cluster/metadata-map.ts";
import type { PeerProgress } from "../cluster/sync.ts";
import { readFileBytes, writeFileAtomic } from "./atomic-file.ts";
import {
  decodeRecords, JournalFile, journalBytesMin, type JournalRecord,
} from "./metadata-journal.ts";

/** The file names inside a home (docs/home-layout.md describes each). */
export const homeFiles = {
  lock: "lock",
  identity: "identity.cbor",
  secret: "cluster-secret",
  metadata: "metadata.cbor",
  metadataJournal: "metadata.journal",
  control: "control.sock",
  resources: "resources",
  deleted: "deleted",
} as const;

export const homeFormat = 1;

/** A directory under deleted/ and when it was set aside (wall clock). */
export interface SetAsideEntry {
  readonly path: string;
  readonly setAsideMs: number;
}

/** `RES-<ISO time with : and . as ->[-N]`, as setAsideResource names them. */
const setAsideStampPattern =
  /-(\d{4}-\d{2}-\d{2})T(\d{2})-(\d{2})-(\d{2})-(\d{3})Z(?:-\d+)?$/;

/** The time part of a set-aside directory's name (file-name safe). */
function setAsideStamp(nowMs: number): string {
  return new Date(Math.floor(nowMs)).toISOString().replace(/[:.]/g, "-");
}

/** When the directory `name` was set aside, or undefined for a name mars did not give. */
function setAsideTimeOf(name: string): number | undefined {
  const found = setAsideStampPattern.exec(name);
  if (!found) return undefined;
  const [, day, hours, minutes, seconds, milliseconds] = found;
  const setAsideMs = Date.parse(`${day}T${hours}:${minutes}:${seconds}.${milliseconds}Z`);
  return Number.isFinite(setAsideMs) ? setAsideMs : undefined;
}

/** Names tried for one resource set aside within one millisecond. */
const setAsideAttemptsMax = 1000;

/** Who this host is in which cluster; written once by create-cluster or join-cluster. */
export interface Identity {
  readonly format: number;
  readonly cluster: string;
  readonly host: string;
  /** Where the engine listens for peers, "ADDRESS:PORT". */
  readonly listen: string;
  /** Names this home's metadata map; peers restart their count when it changes. */
  readonly incarnation: string;
  readonly createdMs: number;
  /** Mutual TLS for peer connections (PEM files), when the cluster uses it. */
  readonly tls?: { readonly certFile: string; readonly keyFile: string; readonly caFile: string };
}

/** The replicated map as this host holds it, with its progress through every peer's map. */
export interface MetadataSnapshot {
  readonly format: number;
  readonly lamportTime: number;
  readonly seqHigh: number;
  readonly entries: readonly WireEntry[];
  readonly peers: Readonly<Record<string, PeerProgress>>;
  /** Entries held aside by the membership rule until their author is known as a member. */
  readonly held?: readonly WireEntry[];
  /** Names this snapshot: journal records continuing it carry it (absent: 0). */
  readonly journalGeneration?: number;
}

/** Changes since the last save, appended to the journal (`Home.saveMetadata`). */
export type MetadataChanges = Omit<JournalRecord, "generation">;

const secretPrefix = "mars-cluster-secret";

/** The secret file's one line: format tag, cluster id, secret in hex. */
export function formatSecret(cluster: string, secret: Uint8Array): string {
  const hex = [...secret].map((byte) => byte.toString(16).padStart(2, "0")).join("");
  return `${secretPrefix} 1 ${cluster} ${hex}\n`;
}

export function parseSecret(text: string): { cluster: string; secret: Uint8Array } {
  const [prefix, version, cluster, hex, extra] = text.trim().split(/\s+/);
  const valid = prefix === secretPrefix && version === "1" && cluster && hex && !extra &&
    /^[0-9a-f]{64,}$/.test(hex) && hex.length % 2 === 0;
  if (!valid) throw new MarsError("usage", "not a mars cluster secret (see create-cluster)");
  const secret = new Uint8Array(hex!.length / 2);
  for (let index = 0; index < secret.length; index++) {
    secret[index] = Number.parseInt(hex!.slice(2 * index, 2 * index + 2), 16);
  }
  return { cluster: cluster!, secret };
}

/** A path below `root` for a relative path a peer named; anything escaping the home throws. */
export function confinedPath(root: string, relative: string): string {
  const parts = relative.split("/");
  const safe = relative.length > 0 && !relative.startsWith("/") &&
    parts.every((part) => part.length > 0 && part !== "." && part !== ".." && !part.includes("\0"));
  if (!safe) throw new MarsError("refused", `path '${relative}' is not inside the home`);
  return `${root}/${relative}`;
}

export class Home {
  /** The journal generation of the snapshot last read or written here (undefined: neither). */
  private generation: number | undefined;
  private journal: JournalFile | undefined;
  private snapshotBytes = 0;

  constructor(
    readonly path: string,
    private readonly storage: Storage,
    private readonly locks: FileLocks,
  ) {
    assert(path.length > 0, "a home has a path");
  }

  file(name: (typeof homeFiles)[keyof typeof homeFiles]): string {
    return `${this.path}/${name}`;
  }

  resourceDirectory(resource: string): string {
    return confinedPath(this.file(homeFiles.resources), resource);
  }

  /** `resources/RES` when it exists: local state of a resource (maybe of an earlier one). */
  async existingResourceDirectory(resource: string): Promise<string | undefined> {
    const path = this.resourceDirectory(resource);
    return (await this.storage.files.status(path)) ? path : undefined;
  }

  /**
   * Moves `resources/RES` to `deleted/RES-TIME` (wall-clock `nowMs`), durably, once this host
   * is no member of RES any more: a later resource of that name must never find its logfiles,
   * positions or sync cursor. Nothing is deleted (an operator may still want a logfile).
   * Returns the new path, or undefined when there was no directory.
   */
  /**
   * The directories under deleted/ that `setAsideResource` made, oldest first, with the wall
   * clock time each was set aside (from its name). Anything else there is not listed.
   */
  async setAsideEntries(): Promise<SetAsideEntry[]> {
    const deleted = this.file(homeFiles.deleted);
    if (!(await this.storage.files.status(deleted))) return [];
    const entries: SetAsideEntry[] = [];
    for (const name of await this.storage.files.list(deleted)) {
      const setAsideMs = setAsideTimeOf(name);
      if (setAsideMs !== undefined) entries.push({ path: confinedPath(deleted, name), setAsideMs });
    }
    return entries.sort((left, right) => left.setAsideMs - right.setAsideMs);
  }

  /** Removes one directory `setAsideEntries` listed, with everything in it. */
  async removeSetAside(path: string): Promise<void> {
    const deleted = this.file(homeFiles.deleted);
    assert(path.startsWith(`${deleted}/`), "only a set-aside directory is removed");
    await this.storage.files.removeTree(path);
    await this.storage.files.syncDirectory(deleted);
  }

  async setAsideResource(resource: string, nowMs: number): Promise<string | undefined> {
    const from = await this.existingResourceDirectory(resource);
    if (!from) return undefined;
    assert(Number.isFinite(nowMs) && nowMs >= 0, "a wall-clock time");
    const deleted = this.file(homeFiles.deleted);
    await this.storage.files.makeDirectory(deleted);
    const stamp = setAsideStamp(nowMs);
    let to = confinedPath(deleted, `${resource}-${stamp}`);
    for (let attempt = 2; await this.storage.files.status(to); attempt++) {
      assert(attempt <= setAsideAttemptsMax, "a free name for a set-aside resource");
      to = confinedPath(deleted, `${resource}-${stamp}-${attempt}`);
    }
    await this.storage.files.rename(from, to);
    await this.storage.files.syncDirectory(deleted);
    await this.storage.files.syncDirectory(this.file(homeFiles.resources));
    await this.storage.files.syncDirectory(this.path);
    return to;
  }

  async isInitialised(): Promise<boolean> {
    if (!(await this.storage.files.status(this.path))) return false;
    return (await this.storage.files.status(this.file(homeFiles.identity))) !== undefined;
  }

  /** Creates the home directory (0700) for a new identity; refuses an initialised home. */
  async prepare(): Promise<void> {
    if (await this.isInitialised()) {
      throw new MarsError("refused", `${this.path} already belongs to a cluster`);
    }
    await this.storage.files.makeDirectory(this.path);
    await this.storage.files.makeDirectory(this.file(homeFiles.resources));
  }

  /** The exclusive lock: held by the running engine, or briefly by an admin command. */
  async tryLock(): Promise<HeldLock | undefined> {
    if (!(await this.storage.files.status(this.path))) await this.requireInitialised();
    return this.locks.tryLock(this.file(homeFiles.lock));
  }

  async requireInitialised(): Promise<void> {
    if (!(await this.isInitialised())) {
      throw new MarsError("not-initialised",
        `${this.path} is not a mars home: run 'mars create-cluster' or 'mars join-cluster' first`);
    }
  }

  async readIdentity(): Promise<Identity> {
    await this.requireInitialised();
    const value = decodeCbor((await readFileBytes(this.storage, this.file(homeFiles.identity)))!);
    const identity = value as Identity;
    if (typeof identity !== "object" || identity.format !== homeFormat) {
      throw new MarsError("io", `${this.file(homeFiles.identity)} has an unknown format`);
    }
    return identity;
  }

  async writeIdentity(identity: Identity): Promise<void> {
    await writeFileAtomic(this.storage, this.file(homeFiles.identity), encodeCbor(identity));
  }

  async readSecret(): Promise<{ cluster: string; secret: Uint8Array }> {
    const bytes = await readFileBytes(this.storage, this.file(homeFiles.secret));
    if (!bytes) throw new MarsError("not-initialised", `${this.path} has no cluster secret`);
    return parseSecret(new TextDecoder().decode(bytes));
  }

  /** Written 0600 (every file the store creates is). */
  async writeSecret(cluster: string, secret: Uint8Array): Promise<void> {
    const text = new TextEncoder().encode(formatSecret(cluster, secret));
    await writeFileAtomic(this.storage, this.file(homeFiles.secret), text);
  }

  /** The map as last saved: the snapshot with the journal's records replayed onto it. */
  async readMetadata(): Promise<MetadataSnapshot | undefined> {
    const bytes = await readFileBytes(this.storage, this.file(homeFiles.metadata));
    if (!bytes) return undefined;
    const snapshot = decodeCbor(bytes) as MetadataSnapshot;
    if (typeof snapshot !== "object" || snapshot.format !== homeFormat) {
      throw new MarsError("io", `${this.file(homeFiles.metadata)} has an unknown format`);
    }
    this.snapshotBytes = bytes.length;
    const generation = snapshot.journalGeneration ?? 0;
    const path = this.file(homeFiles.metadataJournal);
    const journal = await readFileBytes(this.storage, path) ?? new Uint8Array(0);
    const { records, validBytes } = decodeRecords(journal, generation);
    this.journal = new JournalFile(this.storage, path, validBytes, validBytes < journal.length);
    this.generation = generation;
    return records.length === 0 ? snapshot : replayJournal(snapshot, records);
  }

  /**
   * A full snapshot (temporary, fsync, rename): it starts a new journal generation, so the
   * records of the old journal no longer count (the file is cut at the next append).
   */
  async writeMetadata(snapshot: MetadataSnapshot): Promise<void> {
    assert(snapshot.format === homeFormat, "snapshots are written in the current format");
    if (this.generation === undefined) await this.readMetadata();
    const generation = (this.generation ?? 0) + 1;
    const bytes = encodeCbor({ ...snapshot, journalGeneration: generation });
    await writeFileAtomic(this.storage, this.file(homeFiles.metadata), bytes);
    this.generation = generation;
    this.snapshotBytes = bytes.length;
    this.journal = new JournalFile(this.storage, this.file(homeFiles.metadataJournal), 0, true);
  }

  /**
   * Saves `changes` durably: appended to the journal (cost grows with the changes), or, once
   * the journal has grown past its bound or no snapshot was read or written, as the full
   * snapshot `full()` returns.
   */
  async saveMetadata(changes: MetadataChanges, full: () => MetadataSnapshot): Promise<void> {
    const journal = this.journal;
    const boundBytes = Math.max(journalBytesMin, 2 * this.snapshotBytes);
    if (this.generation === undefined || !journal || journal.bytes > boundBytes) {
      return this.writeMetadata(full());
    }
    await journal.append({ ...changes, generation: this.generation });
  }
}

/** The snapshot with the journal's records applied in order (the newest entry per key). */
function replayJournal(
  snapshot: MetadataSnapshot, records: readonly JournalRecord[],
): MetadataSnapshot {
  const entries = new Map<string, WireEntry>();
  for (const entry of snapshot.entries) entries.set(entry.key, entry);
  let { lamportTime, seqHigh, peers, held } = snapshot;
  for (const record of records) {
    for (const entry of record.entries) entries.set(entry.key, entry);
    lamportTime = Math.max(lamportTime, record.lamportTime);
    seqHigh = Math.max(seqHigh, record.seqHigh);
    peers = record.peers;
    held = record.held;
  }
  return { ...snapshot, lamportTime, seqHigh, peers, held, entries: [...entries.values()] };
}
