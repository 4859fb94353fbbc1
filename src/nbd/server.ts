/** The NBD server: a session per connection, handshake then transmission, over any device. */
import { assert } from "../lib/assert.ts";
import { checkedBlockDevice } from "../block/checked.ts";
import type { BlockDevice } from "../block/types.ts";
import type { Connection, ConnectionHandlers } from "../platform/types.ts";
import { ByteQueue } from "./byte-queue.ts";
import { Handshake, type NbdExport } from "./handshake.ts";
import { heapBuffers, type PayloadBuffers } from "./payload-buffers.ts";
import { encodeGreeting } from "./protocol.ts";
import { Transmission } from "./transmission.ts";

/** Largest READ/WRITE payload served (the protocol's portable ceiling is 32 MiB). */
export const payloadBytesLimit = 32 * 1024 * 1024;
/** Connections served at once; more are closed at accept. */
export const connectionsMax = 256;
/** Unparsed bytes one connection may hold: two largest writes plus slack. */
export const inputQueueBytesMax = 2 * payloadBytesLimit + 1024 * 1024;

export interface ExportDefinition {
  readonly name: string;
  readonly description?: string;
  /** Served through `checkedBlockDevice`; the server never calls it unchecked. */
  readonly device: BlockDevice;
}

export interface NbdServerOptions {
  readonly exports: readonly ExportDefinition[];
  /** One line per connection event (opened, closed, protocol violations). */
  readonly log?: (line: string) => void;
  /** Where payloads and read replies live (default: the heap). */
  readonly buffers?: PayloadBuffers;
}

/** Serves exports to user-space clients (with handshake) and to the kernel driver (without). */
export class NbdServer {
  readonly exports: readonly NbdExport[];
  private readonly sessions = new Set<Session>();
  private closing = false;
  readonly log: (line: string) => void;
  readonly buffers: PayloadBuffers;

  constructor(options: NbdServerOptions) {
    assert(options.exports.length >= 1, "a server has an export");
    this.exports = options.exports.map((definition) => {
      const device = checkedBlockDevice(definition.device);
      const payloadBytesMax = Math.min(device.capabilities.blockSizes.maximumBytes,
        payloadBytesLimit);
      return {
        name: definition.name, description: definition.description ?? "", device,
        payloadBytesMax,
      };
    });
    this.log = options.log ?? (() => {});
    this.buffers = options.buffers ?? heapBuffers;
  }

  get connectionCount(): number {
    return this.sessions.size;
  }

  /** Handler for `Network.listen`: greets, negotiates, then serves. */
  readonly accept = (connection: Connection): ConnectionHandlers => {
    if (this.closing || this.sessions.size >= connectionsMax) {
      this.log(`refusing ${connection.remote}: ${this.closing ? "shutting down" : "too many"}`);
      connection.destroy();
      return { data() {}, drain() {}, closed() {} };
    }
    const session = new Session(this, connection, undefined);
    this.sessions.add(session);
    connection.write(encodeGreeting());
    return session.handlers;
  };

  /** Serves a connection of the kernel driver: no handshake, simple replies only. */
  serveKernel(connection: Connection, exportName = ""): ConnectionHandlers {
    if (this.closing) {
      // A re-attach that raced with shutdown: the kernel is being disconnected anyway.
      connection.destroy();
      return { data() {}, drain() {}, closed() {} };
    }
    const chosen = this.exports.find((entry) => entry.name === exportName) ?? this.exports[0]!;
    const session = new Session(this, connection, chosen);
    this.sessions.add(session);
    return session.handlers;
  }

  /** Stops taking requests, waits for every reply, flushes every writable export. */
  async shutdown(): Promise<void> {
    this.closing = true;
    await Promise.all([...this.sessions].map((session) => session.stop()));
    for (const entry of this.exports) {
      if (entry.device.capabilities.flush) await entry.device.flush();
    }
  }

  forget(session: Session): void {
    this.sessions.delete(session);
  }
}

/** One connection: its input bytes, then its handshake, then its transmission. */
class Session {
  private readonly queue = new ByteQueue(inputQueueBytesMax);
  private handshake: Handshake | undefined;
  private transmission: Transmission | undefined;
  private ended = false;
  readonly handlers: ConnectionHandlers;

  constructor(
    private readonly server: NbdServer,
    private readonly connection: Connection,
    kernelExport: NbdExport | undefined,
  ) {
    this.handlers = {
      data: (chunk) => this.receive(chunk),
      drain: () => this.transmission?.drained(),
      closed: (error) => this.closed(error),
    };
    if (kernelExport) this.enterTransmission(kernelExport, false);
    else this.handshake = new Handshake(server.exports, (bytes) => connection.write(bytes));
  }

  stop(): Promise<void> {
    if (this.transmission) return this.transmission.stop();
    this.end("server shutting down");
    return Promise.resolve();
  }

  private receive(chunk: Uint8Array): void {
    if (this.ended) return;
    if (this.transmission) {
      if (!this.transmission.receive(chunk)) this.abort("client ignores flow control");
      return;
    }
    if (!this.queue.push(chunk)) {
      this.abort("client ignores flow control");
      return;
    }
    if (this.handshake) {
      const outcome = this.handshake.advance(this.queue);
      if (outcome.kind === "waiting") return;
      if (outcome.kind === "close") {
        this.end(outcome.reason);
        return;
      }
      this.handshake = undefined;
      this.enterTransmission(outcome.export, outcome.structured);
    }
  }

  private enterTransmission(chosen: NbdExport, structured: boolean): void {
    const connection = this.connection;
    const settings = {
      device: chosen.device, structured, payloadBytesMax: chosen.payloadBytesMax,
      buffers: this.server.buffers,
    };
    this.transmission = new Transmission(settings, this.queue, {
      write: (bytes) => connection.write(bytes),
      setReadingPaused: (paused) => (paused ? connection.pause?.() : connection.resume?.()),
      abort: (reason) => this.abort(reason),
      finish: () => this.end("client disconnected"),
    });
    this.transmission.pump();
  }

  private abort(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.server.log(`dropping ${this.connection.remote}: ${reason}`);
    this.queue.clear();
    this.transmission?.abandon();
    this.connection.destroy();
  }

  private end(reason: string): void {
    if (this.ended) return;
    this.ended = true;
    this.server.log(`closing ${this.connection.remote}: ${reason}`);
    this.queue.clear();
    this.connection.end();
  }

  private closed(error?: Error): void {
    this.ended = true;
    this.queue.clear();
    this.server.forget(this);
    if (error) this.server.log(`connection ${this.connection.remote} failed: ${error.message}`);
    // Requests already running finish against the device; their replies go nowhere.
    this.transmission?.abandon();
    void this.transmission?.stop();
  }
}
