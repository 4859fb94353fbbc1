/** Two in-memory Connection ends wired to each other, so protocol code runs without sockets. */
import type { Connection, ConnectionHandlers } from "../../src/platform/types.ts";

/** Bytes above which `write` asks the producer to wait for `drain`. */
export const fakeHighWaterBytes = 1024 * 1024;

class FakeEnd implements Connection {
  queuedBytes = 0;
  handlers: ConnectionHandlers | undefined;
  peer!: FakeEnd;
  closed = false;
  paused = false;
  /** Every byte this end sent, when recording (for byte-exact assertions). */
  readonly sent: Uint8Array[] = [];
  private readonly inbox: Uint8Array[] = [];
  private wantsDrain = false;

  constructor(readonly remote: string, private readonly record: boolean) {}

  write(data: Uint8Array): boolean {
    if (this.closed) return false;
    const copy = data.slice();
    if (this.record) this.sent.push(copy);
    this.queuedBytes += copy.length;
    queueMicrotask(() => {
      this.queuedBytes -= copy.length;
      this.peer.deliver(copy);
      if (this.wantsDrain && this.queuedBytes === 0) {
        this.wantsDrain = false;
        this.handlers?.drain();
      }
    });
    if (this.queuedBytes > fakeHighWaterBytes) this.wantsDrain = true;
    return this.queuedBytes <= fakeHighWaterBytes;
  }

  deliver(chunk: Uint8Array): void {
    if (this.closed) return;
    if (this.paused || !this.handlers) this.inbox.push(chunk);
    else this.handlers.data(chunk);
  }

  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (!this.paused && this.inbox.length > 0 && this.handlers) {
      this.handlers.data(this.inbox.shift()!);
    }
  }

  end(): void {
    queueMicrotask(() => this.destroy());
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.handlers?.closed();
    queueMicrotask(() => this.peer.destroy());
  }
}

export interface ConnectionPair {
  readonly client: Connection & { sent: Uint8Array[]; closed: boolean };
  readonly server: Connection & { sent: Uint8Array[]; closed: boolean; paused: boolean };
  /** Installs the handlers of each end (and releases bytes that arrived earlier). */
  attach(client: ConnectionHandlers, server: ConnectionHandlers): void;
}

export function connectionPair(record = false): ConnectionPair {
  const client = new FakeEnd("fake-client", record);
  const server = new FakeEnd("fake-server", record);
  client.peer = server;
  server.peer = client;
  return {
    client,
    server,
    attach(clientHandlers, serverHandlers) {
      client.handlers = clientHandlers;
      server.handlers = serverHandlers;
      client.resume();
      server.resume();
    },
  };
}
