/** A TCP proxy that makes loopback act like a WAN link: delay, bandwidth, resets, cuts. */
import type { Socket, TCPSocketListener } from "bun";

/** Behaviour of one direction of traffic; every field may be changed while the proxy runs. */
export interface LinkSettings {
  /** One-way delay added to every chunk (a 120 ms RTT is 60 ms each way). */
  delayMs: number;
  /** Bytes per second this direction carries; 0 = unlimited. */
  bandwidthBytesPerSecond: number;
}

export interface WanProxyOptions {
  /** Where the proxy forwards to. */
  readonly targetPort: number;
  readonly targetHost?: string;
  /** Port to listen on (loopback only); 0 picks a free one. */
  readonly listenPort?: number;
  readonly forward?: Partial<LinkSettings>;
  readonly backward?: Partial<LinkSettings>;
  /** Probability per forwarded chunk that the whole connection is reset. */
  readonly resetProbability?: number;
  /** Seeded decisions for resets, so a failing run can be replayed. */
  readonly seed?: number;
}

/** Chunks waiting in one direction; bounded so a stalled reader cannot eat the machine. */
const queuedBytesMax = 256 * 1024 * 1024;

interface Pipe {
  readonly client: Socket<PipeData>;
  server: Socket<PipeData> | undefined;
  closed: boolean;
  readonly directions: { toServer: Direction; toClient: Direction };
}
interface PipeData {
  pipe: Pipe;
  side: "client" | "server";
}
interface Direction {
  readonly settings: LinkSettings;
  /** When the link is next free to put bytes on the wire (bandwidth pacing). */
  wireFreeAtMs: number;
  queuedBytes: number;
  pendingWrite: Uint8Array[];
  tail: Promise<void>;
}

export class WanProxy {
  readonly forward: LinkSettings;
  readonly backward: LinkSettings;
  resetProbability: number;
  /** While true, new connections are refused and traffic is dropped (a partition). */
  partitioned = false;
  private readonly pipes = new Set<Pipe>();
  private listener: TCPSocketListener<PipeData> | undefined;
  private randomState: number;
  resets = 0;

  constructor(private readonly options: WanProxyOptions) {
    this.forward = { delayMs: 0, bandwidthBytesPerSecond: 0, ...options.forward };
    this.backward = { delayMs: 0, bandwidthBytesPerSecond: 0, ...options.backward };
    this.resetProbability = options.resetProbability ?? 0;
    this.randomState = (options.seed ?? 1) >>> 0 || 1;
  }

  get port(): number {
    if (!this.listener) throw new Error("proxy not started");
    return this.listener.port;
  }

  start(): this {
    this.listener = Bun.listen<PipeData>({
      hostname: "127.0.0.1",
      port: this.options.listenPort ?? 0,
      socket: {
        open: (client) => this.accept(client),
        data: (socket, chunk) => this.relay(socket.data.pipe, socket.data.side, chunk),
        drain: (socket) => flushPending(socket, socket.data.pipe.directions.toClient),
        close: (socket) => this.closePipe(socket.data?.pipe),
        error: (socket) => this.closePipe(socket.data?.pipe),
      },
    });
    return this;
  }

  /** Cuts every connection now (a partition starts, or a line resets). */
  cutAll(): void {
    for (const pipe of [...this.pipes]) this.closePipe(pipe);
  }

  /** Starts or heals a partition; starting one also cuts the live connections. */
  setPartitioned(partitioned: boolean): void {
    this.partitioned = partitioned;
    if (partitioned) this.cutAll();
  }

  stop(): void {
    this.cutAll();
    this.listener?.stop(true);
    this.listener = undefined;
  }

  private accept(client: Socket<PipeData>): void {
    if (this.partitioned) {
      client.terminate();
      return;
    }
    const pipe: Pipe = {
      client, server: undefined, closed: false,
      directions: { toServer: newDirection(this.forward), toClient: newDirection(this.backward) },
    };
    client.data = { pipe, side: "client" };
    this.pipes.add(pipe);
    Bun.connect<PipeData>({
      hostname: this.options.targetHost ?? "127.0.0.1",
      port: this.options.targetPort,
      socket: {
        open: (server) => {
          server.data = { pipe, side: "server" };
          pipe.server = server;
          if (pipe.closed) server.terminate();
          else flushPending(server, pipe.directions.toServer);
        },
        data: (socket, chunk) => this.relay(socket.data.pipe, socket.data.side, chunk),
        drain: (socket) => flushPending(socket, socket.data.pipe.directions.toServer),
        close: () => this.closePipe(pipe),
        error: () => this.closePipe(pipe),
      },
    }).catch(() => this.closePipe(pipe));
  }

  private relay(pipe: Pipe, from: "client" | "server", chunk: Uint8Array): void {
    if (pipe.closed || this.partitioned) return;
    if (from === "client" && this.nextUnit() < this.resetProbability) {
      this.resets++;
      this.closePipe(pipe);
      return;
    }
    const direction = from === "client" ? pipe.directions.toServer : pipe.directions.toClient;
    if (direction.queuedBytes + chunk.length > queuedBytesMax) {
      this.closePipe(pipe);
      return;
    }
    const copy = chunk.slice();
    direction.queuedBytes += copy.length;
    const now = performance.now();
    const rate = direction.settings.bandwidthBytesPerSecond;
    const wireMs = rate > 0 ? (copy.length * 1000) / rate : 0;
    direction.wireFreeAtMs = Math.max(direction.wireFreeAtMs, now) + wireMs;
    const deliverAtMs = direction.wireFreeAtMs + direction.settings.delayMs;
    // Deliveries stay in order: each waits for the one before it.
    direction.tail = direction.tail.then(() => sleepUntil(deliverAtMs)).then(() => {
      direction.queuedBytes -= copy.length;
      if (pipe.closed) return;
      const target = from === "client" ? pipe.server : pipe.client;
      direction.pendingWrite.push(copy);
      if (target) flushPending(target, direction);
    });
  }

  private closePipe(pipe: Pipe | undefined): void {
    if (!pipe || pipe.closed) return;
    pipe.closed = true;
    this.pipes.delete(pipe);
    pipe.client.terminate();
    pipe.server?.terminate();
  }

  /** xorshift32 in [0, 1). */
  private nextUnit(): number {
    let x = this.randomState;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.randomState = x >>> 0;
    return this.randomState / 2 ** 32;
  }
}

function newDirection(settings: LinkSettings): Direction {
  return { settings, wireFreeAtMs: 0, queuedBytes: 0, pendingWrite: [], tail: Promise.resolve() };
}

function flushPending(socket: Socket<PipeData>, direction: Direction): void {
  while (direction.pendingWrite.length > 0) {
    const head = direction.pendingWrite[0]!;
    const written = socket.write(head);
    if (written < head.length) {
      direction.pendingWrite[0] = head.subarray(Math.max(0, written));
      return;
    }
    direction.pendingWrite.shift();
  }
}

function sleepUntil(deadlineMs: number): Promise<void> {
  const waitMs = deadlineMs - performance.now();
  return waitMs > 0 ? Bun.sleep(waitMs) : Promise.resolve();
}
