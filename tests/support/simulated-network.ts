/** Simulated networks: seeded messages (reorder, duplicate, lose, cut) and byte streams. */
import { MarsError } from "../../src/lib/errors.ts";
import type {
  Address, Clock, Connection, ConnectionHandlers, Listener, Network, Random,
} from "../../src/platform/types.ts";

export interface FaultOptions {
  /** Probability (0..1) that a sent message is dropped. */
  readonly lossProbability: number;
  /** Probability (0..1) that a sent message is delivered twice. */
  readonly duplicateProbability: number;
}

export const noFaults: FaultOptions = { lossProbability: 0, duplicateProbability: 0 };

interface InFlight<Message> {
  readonly from: string;
  readonly to: string;
  readonly message: Message;
}

/** Bound on messages in flight, so a runaway simulation fails loudly instead of eating memory. */
export const inFlightMessagesMax = 100_000;

/**
 * Messages between named nodes. Nothing is delivered until the test asks; `deliverOne` picks a
 * random in-flight message, so any delivery order can happen. A partition drops messages that
 * would cross it at delivery time, as a cut link would.
 */
export class SimulatedMessageNetwork<Message> {
  private inFlight: InFlight<Message>[] = [];
  private readonly cut = new Set<string>();
  private readonly receivers = new Map<string, (from: string, message: Message) => void>();
  delivered = 0;
  dropped = 0;

  constructor(private readonly random: Random, public faults: FaultOptions = noFaults) {}

  register(node: string, receive: (from: string, message: Message) => void): void {
    this.receivers.set(node, receive);
  }

  send(from: string, to: string, message: Message): void {
    if (this.chance(this.faults.lossProbability)) {
      this.dropped++;
      return;
    }
    const copies = this.chance(this.faults.duplicateProbability) ? 2 : 1;
    for (let copy = 0; copy < copies; copy++) this.inFlight.push({ from, to, message });
    if (this.inFlight.length > inFlightMessagesMax) {
      throw new Error(`more than ${inFlightMessagesMax} messages in flight`);
    }
  }

  get pending(): number {
    return this.inFlight.length;
  }

  /** Cuts the link between `left` and `right` in both directions. */
  partition(left: string, right: string): void {
    this.cut.add(linkName(left, right));
  }

  /** Isolates `groupA` from everyone else. */
  isolate(group: readonly string[], everyone: readonly string[]): void {
    for (const inside of group) {
      for (const outside of everyone) if (!group.includes(outside)) this.partition(inside, outside);
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Delivers one random in-flight message; false when none is left. */
  deliverOne(): boolean {
    if (this.inFlight.length === 0) return false;
    const index = this.random.nextUint32() % this.inFlight.length;
    const [item] = this.inFlight.splice(index, 1);
    if (this.cut.has(linkName(item!.from, item!.to))) {
      this.dropped++;
      return true;
    }
    this.delivered++;
    this.receivers.get(item!.to)?.(item!.from, item!.message);
    return true;
  }

  /** Delivers until nothing is in flight (answers sent meanwhile are delivered too). */
  deliverAll(stepsMax = 1_000_000): void {
    for (let step = 0; step < stepsMax; step++) if (!this.deliverOne()) return;
    throw new Error(`network did not quiesce within ${stepsMax} deliveries`);
  }

  private chance(probability: number): boolean {
    return probability > 0 && this.random.nextUint32() / 2 ** 32 < probability;
  }
}

function linkName(left: string, right: string): string {
  return left < right ? `${left}|${right}` : `${right}|${left}`;
}

// --- byte streams: a Network for engines running on a SimulatedClock ---


/** Bytes one simulated connection may hold in flight (a runaway sender fails loudly). */
export const streamInFlightBytesMax = 64 * 1024 * 1024;

class SimulatedConnection implements Connection {
  queuedBytes = 0;
  closed = false;
  peer!: SimulatedConnection;
  handlers: ConnectionHandlers | undefined;
  private deliverAtMs = 0;

  constructor(
    readonly node: string,
    readonly remote: string,
    private readonly network: SimulatedStreamNetwork,
  ) {}

  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    const copy = data.slice();
    const clock = this.network.clock;
    // TCP keeps order: each chunk arrives no earlier than the one before it.
    this.deliverAtMs = Math.max(this.deliverAtMs, clock.monotonicMs() + this.network.latencyMs);
    this.queuedBytes += copy.length;
    if (this.queuedBytes > streamInFlightBytesMax) throw new Error("simulated stream overflow");
    clock.setTimer(this.deliverAtMs - clock.monotonicMs(), () => {
      this.queuedBytes -= copy.length;
      if (!this.closed && !this.peer.closed) this.peer.handlers?.data(copy);
    });
    return true;
  }

  end(): void {
    const clock = this.network.clock;
    clock.setTimer(Math.max(0, this.deliverAtMs - clock.monotonicMs()), () => this.destroy());
  }

  destroy(error?: Error): void {
    for (const side of [this as SimulatedConnection, this.peer]) {
      if (side.closed) continue;
      side.closed = true;
      this.network.open.delete(side);
      side.handlers?.closed(error);
    }
  }
}

/**
 * Connections between named nodes on a simulated clock, with a fixed one-way latency. A
 * partition refuses new connections across it and cuts the open ones (as a firewall that sends
 * resets would); a crashed node's connections and listeners vanish.
 */
export class SimulatedStreamNetwork {
  latencyMs = 5;
  readonly open = new Set<SimulatedConnection>();
  private readonly listeners = new Map<string, {
    node: string; accept: (connection: Connection) => ConnectionHandlers;
  }>();
  private readonly cut = new Set<string>();
  private nextPort = 40_000;

  constructor(readonly clock: Clock) {}

  /** The Network as `node` sees it. */
  view(node: string): Network {
    return {
      listen: async (address, accept) => this.listen(node, address, accept),
      connect: async (address, handlers) => this.connect(node, address, handlers),
    };
  }

  partition(left: string, right: string): void {
    this.cut.add(linkName(left, right));
    for (const connection of [...this.open]) {
      if (linkName(connection.node, connection.peer.node) === linkName(left, right)) {
        connection.destroy(new Error("partitioned"));
      }
    }
  }

  heal(): void {
    this.cut.clear();
  }

  /** Drops every listener and connection of `node` (its process died). */
  crash(node: string): void {
    for (const [key, listener] of this.listeners) {
      if (listener.node === node) this.listeners.delete(key);
    }
    for (const connection of [...this.open]) {
      if (connection.node === node) connection.destroy(new Error("peer crashed"));
    }
  }

  private listen(
    node: string, address: Address, accept: (connection: Connection) => ConnectionHandlers,
  ): Listener {
    const bound: Address = address.kind === "tcp" && address.port === 0
      ? { ...address, port: this.nextPort++ } : address;
    const key = addressKey(bound);
    if (this.listeners.has(key)) throw new MarsError("io", `address in use: ${key}`);
    this.listeners.set(key, { node, accept });
    return { address: bound, close: () => this.listeners.delete(key) };
  }

  private connect(node: string, address: Address, handlers: ConnectionHandlers): Connection {
    const listener = this.listeners.get(addressKey(address));
    if (!listener || this.cut.has(linkName(node, listener.node))) {
      throw new MarsError("peer-unreachable", `cannot connect to ${addressKey(address)}`);
    }
    const client = new SimulatedConnection(node, addressKey(address), this);
    const server = new SimulatedConnection(listener.node, node, this);
    client.peer = server;
    server.peer = client;
    this.open.add(client);
    this.open.add(server);
    client.handlers = handlers;
    server.handlers = listener.accept(server);
    return client;
  }
}

function addressKey(address: Address): string {
  return address.kind === "unix" ? `unix:${address.path}` : `${address.host}:${address.port}`;
}
