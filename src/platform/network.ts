/** The real Network: unix and TCP byte streams over Bun sockets, with bounded send queues. */
import type { Socket, TCPSocketListener, UnixSocketListener } from "bun";
import { assert } from "../lib/assert.ts";
import { MarsError } from "../lib/errors.ts";
import type {
  Address, Connection, ConnectionHandlers, Listener, Network,
} from "./types.ts";

/** Above this many queued bytes `write` returns false; producers wait for `drain`. */
export const sendQueueHighWaterBytes = 4 * 1024 * 1024;
/** `drain` fires when the queue falls below this. */
export const sendQueueLowWaterBytes = 1024 * 1024;

export interface SocketState {
  connection: BunConnection;
}

/** Wraps one Bun socket; Bun's write may accept only part of a buffer, the rest waits here. */
export class BunConnection implements Connection {
  queuedBytes = 0;
  private readonly queue: Uint8Array[] = [];
  private ending = false;
  private isClosed = false;
  private wantsDrain = false;
  handlers: ConnectionHandlers | undefined;
  private readonly early: Uint8Array[] = [];

  constructor(
    private readonly socket: Socket<SocketState>,
    readonly remote: string,
  ) {}

  write(data: Uint8Array): boolean {
    if (this.isClosed || this.ending) return false;
    if (this.queue.length === 0) {
      const written = this.socket.write(data);
      if (written === data.length) return true;
      data = data.subarray(Math.max(0, written));
    }
    this.queue.push(data.slice());
    this.queuedBytes += data.length;
    const below = this.queuedBytes <= sendQueueHighWaterBytes;
    if (!below) this.wantsDrain = true;
    return below;
  }

  end(): void {
    this.ending = true;
    if (this.queue.length === 0) this.socket.end();
  }

  destroy(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.socket.terminate();
  }

  pause(): void {
    if (!this.isClosed) this.socket.pause();
  }

  resume(): void {
    if (!this.isClosed) this.socket.resume();
  }

  onData(chunk: Uint8Array): void {
    if (this.handlers) this.handlers.data(chunk);
    else this.early.push(Uint8Array.from(chunk)); // Buffer.slice would not copy
  }

  attach(handlers: ConnectionHandlers): void {
    this.handlers = handlers;
    for (const chunk of this.early.splice(0)) handlers.data(chunk);
  }

  onWritable(): void {
    while (this.queue.length > 0) {
      const head = this.queue[0]!;
      const written = Math.max(0, this.socket.write(head));
      this.queuedBytes -= written;
      if (written < head.length) {
        this.queue[0] = head.subarray(written);
        break;
      }
      this.queue.shift();
    }
    assert(this.queuedBytes >= 0, "queued byte count never goes negative");
    if (this.queue.length === 0 && this.ending) this.socket.end();
    if (this.wantsDrain && this.queuedBytes <= sendQueueLowWaterBytes) {
      this.wantsDrain = false;
      this.handlers?.drain();
    }
  }

  onClose(error?: Error): void {
    if (this.isClosed) return;
    this.isClosed = true;
    this.queue.length = 0;
    this.queuedBytes = 0;
    this.handlers?.closed(error);
  }
}

function describe(address: Address): string {
  return address.kind === "unix" ? `unix:${address.path}` : `${address.host}:${address.port}`;
}

export function socketHandlers(onOpen: (socket: Socket<SocketState>) => void) {
  return {
    open: onOpen,
    data: (socket: Socket<SocketState>, chunk: Uint8Array) => socket.data.connection.onData(chunk),
    drain: (socket: Socket<SocketState>) => socket.data.connection.onWritable(),
    close: (socket: Socket<SocketState>, error?: Error) => socket.data?.connection?.onClose(error),
    error: (socket: Socket<SocketState>, error: Error) => socket.data?.connection?.onClose(error),
  };
}

/**
 * Serves an already-connected stream socket (a socketpair end handed to the kernel nbd driver).
 * Bun owns the descriptor from here on and closes it with the connection.
 */
export async function adoptSocket(fd: number, handlers: ConnectionHandlers): Promise<Connection> {
  let connection: BunConnection | undefined;
  const socketOptions = socketHandlers((socket) => {
    connection = new BunConnection(socket, `fd ${fd}`);
    socket.data = { connection };
    connection.attach(handlers);
  });
  try {
    const socket = await Bun.connect<SocketState>({ fd, socket: socketOptions } as never);
    assert(connection !== undefined && socket.data.connection === connection, "open ran first");
    return connection;
  } catch (error) {
    throw new MarsError("io", `cannot serve socket fd ${fd}: ${error}`);
  }
}

export const bunNetwork: Network = {
  async listen(address, accept): Promise<Listener> {
    const handlers = socketHandlers((socket) => {
      const connection = new BunConnection(socket, socket.remoteAddress || "local");
      socket.data = { connection };
      connection.attach(accept(connection));
    });
    let server: TCPSocketListener<SocketState> | UnixSocketListener<SocketState>;
    try {
      server = address.kind === "unix"
        ? Bun.listen<SocketState>({ unix: address.path, socket: handlers })
        : Bun.listen<SocketState>({ hostname: address.host, port: address.port, socket: handlers });
    } catch (error) {
      throw new MarsError("io", `cannot listen on ${describe(address)}: ${String(error)}`);
    }
    const bound: Address = address.kind === "tcp" && "port" in server
      ? { ...address, port: server.port }
      : address;
    return { address: bound, close: () => server.stop(true) };
  },

  async connect(address, handlers): Promise<Connection> {
    let connection: BunConnection | undefined;
    const socketOptions = socketHandlers((socket) => {
      connection = new BunConnection(socket, describe(address));
      socket.data = { connection };
      connection.attach(handlers);
    });
    try {
      const socket = address.kind === "unix"
        ? await Bun.connect<SocketState>({ unix: address.path, socket: socketOptions })
        : await Bun.connect<SocketState>({
          hostname: address.host, port: address.port, socket: socketOptions,
        });
      assert(connection !== undefined && socket.data.connection === connection, "open ran first");
      return connection;
    } catch (error) {
      throw new MarsError("peer-unreachable", `cannot connect to ${describe(address)}: ${error}`);
    }
  },
};
