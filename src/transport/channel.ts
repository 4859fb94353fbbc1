/** An authenticated, framed message channel over one Connection, dialing or accepting. */
import { assert } from "../lib/assert.ts";
import { isMarsError, MarsError, type ErrorCode } from "../lib/errors.ts";
import type { LamportClock } from "../cluster/lamport.ts";
import type {
  Address, Clock, Connection, ConnectionHandlers, Network, Random, TimerHandle,
} from "../platform/types.ts";
import { encodeFrame, FrameReader, frameBytesMax } from "./framing.ts";
import { computeProof, makeNonce, proofMatches, type Credentials } from "./handshake.ts";
import { parseMessage, protocolVersion, type ChannelKind, type Message } from "./messages.ts";

/** A handshake that takes longer than this is cut off (a stranger cannot hold a slot). */
export const handshakeTimeoutMs = 5_000;

export interface ChannelContext {
  readonly credentials: Credentials;
  readonly random: Random;
  readonly clock: Clock;
  readonly lamport: LamportClock;
}

type Outgoing = Message extends infer M ? (M extends { time: number } ? Omit<M, "time"> : never)
  : never;

export interface Session {
  readonly peer: string;
  readonly channel: ChannelKind;
  readonly remote: string;
  /** Sends a message stamped with a fresh Lamport time; false: the send queue is full. */
  send(message: Outgoing): boolean;
  close(): void;
}

export interface SessionHandlers {
  message(message: Message): void;
  /** A full send queue drained. */
  drain?(): void;
  closed(reason: string): void;
}

/** How the accepting side decides about a hello, and what it does with a session. */
export interface AcceptPolicy {
  /** A refusal code and reason, or undefined to continue with the challenge. */
  admit(hello: Extract<Message, { type: "hello" }>):
    { code: ErrorCode; reason: string } | undefined;
  opened(session: Session): SessionHandlers;
  /** Called for every connection that got nothing but a refusal (to be logged). */
  refused(remote: string, reason: string): void;
}

type Phase = "hello" | "proof" | "welcome" | "open" | "closed";

class Endpoint implements Session {
  peer = "";
  channel: ChannelKind = "metadata";
  phase: Phase;
  handlers: SessionHandlers | undefined;
  readonly reader: FrameReader;
  clientNonce: Uint8Array = new Uint8Array(0);
  serverNonce: Uint8Array = new Uint8Array(0);
  private timer: TimerHandle | undefined;
  closeReason = "closed";
  /** Told about every refusal this (server) side sends, so it can be logged. */
  onRefused: ((remote: string, reason: string) => void) | undefined;

  constructor(
    readonly connection: Connection,
    readonly context: ChannelContext,
    readonly side: "client" | "server",
    private readonly onFrame: (endpoint: Endpoint, message: Message) => void,
  ) {
    this.phase = side === "server" ? "hello" : "welcome";
    this.reader = new FrameReader((value) => this.onFrame(this, parseMessage(value)));
    this.timer = context.clock.setTimer(handshakeTimeoutMs, () => {
      if (this.phase !== "open") this.fail("handshake timed out");
    });
  }

  get remote(): string {
    return this.connection.remote;
  }

  send(message: Outgoing): boolean {
    if (this.phase === "closed") return false;
    return this.connection.write(encodeFrame({ ...message, time: this.context.lamport.tick() }));
  }

  close(): void {
    this.finish("closed by this side");
    this.connection.end();
  }

  opened(): void {
    assert(this.phase !== "open", "a session opens once");
    this.phase = "open";
    this.reader.payloadBytesMax = frameBytesMax;
    this.timer?.cancel();
  }

  fail(reason: string): void {
    this.finish(reason);
    this.connection.destroy();
  }

  finish(reason: string): void {
    if (this.phase === "closed") return;
    this.phase = "closed";
    this.closeReason = reason;
    this.timer?.cancel();
    this.handlers?.closed(reason);
  }

  connectionHandlers(): ConnectionHandlers {
    return {
      data: (chunk) => {
        if (this.phase === "closed") return;
        try {
          this.reader.push(chunk);
        } catch (error) {
          if (!isMarsError(error)) throw error;
          this.onProtocolError(error);
        }
      },
      drain: () => this.handlers?.drain?.(),
      closed: (error) => this.finish(error ? `connection lost: ${error.message}` : "peer closed"),
    };
  }

  onProtocolError(error: MarsError): void {
    if (this.side === "server" && this.phase !== "open") {
      this.refuse("protocol", error.message);
    } else {
      this.fail(error.message);
    }
  }

  refuse(code: ErrorCode, reason: string): void {
    this.onRefused?.(this.remote, reason);
    this.send({ type: "refusal", code, reason });
    this.finish(`refused: ${reason}`);
    this.connection.end();
  }
}

/** Serves one accepted connection: hello → challenge → proof → welcome, then messages. */
export function acceptChannel(
  connection: Connection,
  context: ChannelContext,
  policy: AcceptPolicy,
): ConnectionHandlers {
  const endpoint = new Endpoint(connection, context, "server", (self, message) => {
    if (message.type !== "refusal") context.lamport.observe(message.time);
    if (self.phase === "open") return self.handlers?.message(message);
    serverHandshake(self, message, policy);
  });
  endpoint.onRefused = (remote, reason) => policy.refused(remote, reason);
  const handlers = endpoint.connectionHandlers();
  const closed = handlers.closed;
  return {
    ...handlers,
    closed: (error) => {
      if (endpoint.phase === "hello" || endpoint.phase === "proof") {
        policy.refused(connection.remote, "closed during the handshake");
      }
      closed(error);
    },
  };
}

function serverHandshake(endpoint: Endpoint, message: Message, policy: AcceptPolicy): void {
  const { credentials } = endpoint.context;
  const refuse = (code: ErrorCode, reason: string) => endpoint.refuse(code, reason);
  if (endpoint.phase === "hello" && message.type === "hello") {
    if (message.protocol !== protocolVersion) {
      return refuse("protocol", `protocol ${message.protocol} is not ${protocolVersion}`);
    }
    if (message.cluster !== credentials.cluster) {
      return refuse("cluster-mismatch", "the cluster id does not match");
    }
    const verdict = policy.admit(message);
    if (verdict) return refuse(verdict.code, verdict.reason);
    endpoint.peer = message.host;
    endpoint.channel = message.channel;
    endpoint.clientNonce = message.nonce;
    endpoint.serverNonce = makeNonce(endpoint.context.random);
    endpoint.phase = "proof";
    endpoint.send({ type: "challenge", nonce: endpoint.serverNonce });
    return;
  }
  if (endpoint.phase === "proof" && message.type === "proof") {
    const input = {
      role: "client" as const, cluster: credentials.cluster, channel: endpoint.channel,
      host: endpoint.peer, clientNonce: endpoint.clientNonce, serverNonce: endpoint.serverNonce,
    };
    if (!proofMatches(credentials.secret, input, message.proof)) {
      return refuse("wrong-secret", "authentication failed");
    }
    const proof = computeProof(credentials.secret, {
      ...input, role: "server", host: credentials.host,
    });
    endpoint.opened();
    endpoint.handlers = policy.opened(endpoint);
    endpoint.send({ type: "welcome", host: credentials.host, proof });
    return;
  }
  refuse("protocol", `unexpected '${message.type}' during the handshake`);
}

/** Dials `address` and authenticates both ways; resolves once the session is open. */
export async function dialChannel(
  network: Network,
  address: Address,
  context: ChannelContext,
  channel: ChannelKind,
  onOpen: (session: Session) => SessionHandlers,
): Promise<Session> {
  let settle: { resolve(session: Session): void; reject(error: MarsError): void } | undefined;
  const opened = new Promise<Session>((resolve, reject) => { settle = { resolve, reject }; });
  let endpoint: Endpoint | undefined;
  const clientNonce = makeNonce(context.random);
  const forward: ConnectionHandlers = {
    data: (chunk) => endpoint?.connectionHandlers().data(chunk),
    drain: () => endpoint?.handlers?.drain?.(),
    closed: (error) => {
      if (endpoint?.phase !== "open") {
        const detail = error ? `: ${error.message}` : "";
        settle?.reject(new MarsError("peer-unreachable",
          `${describe(address)} closed the connection during the handshake${detail}`));
      }
      endpoint?.finish(error ? `connection lost: ${error.message}` : "peer closed");
    },
  };
  const connection = await network.connect(address, forward);
  endpoint = new Endpoint(connection, context, "client", (self, message) => {
    context.lamport.observe(message.time);
    if (self.phase === "open") return self.handlers?.message(message);
    const failure = clientHandshake(self, message, channel, clientNonce);
    if (failure) {
      settle?.reject(failure);
      self.fail(failure.message);
    } else if ((self.phase as Phase) === "open") {
      self.handlers = onOpen(self);
      settle?.resolve(self);
    }
  });
  endpoint.channel = channel;
  endpoint.clientNonce = clientNonce;
  const timer = context.clock.setTimer(handshakeTimeoutMs, () => settle?.reject(
    new MarsError("peer-unreachable", `${describe(address)} did not answer the handshake`),
  ));
  endpoint.send({
    type: "hello", protocol: protocolVersion, cluster: context.credentials.cluster,
    host: context.credentials.host, channel, nonce: clientNonce,
  });
  try {
    return await opened;
  } finally {
    timer.cancel();
  }
}

function clientHandshake(
  endpoint: Endpoint, message: Message, channel: ChannelKind, clientNonce: Uint8Array,
): MarsError | undefined {
  const { credentials } = endpoint.context;
  if (message.type === "refusal") {
    const code = (["wrong-secret", "cluster-mismatch", "refused", "unknown-host"] as const)
      .find((known) => known === message.code) ?? "protocol";
    return new MarsError(code, `${endpoint.remote} refused: ${message.reason}`);
  }
  if (message.type === "challenge" && endpoint.serverNonce.length === 0) {
    endpoint.serverNonce = message.nonce;
    const proof = computeProof(credentials.secret, {
      role: "client", cluster: credentials.cluster, channel, host: credentials.host,
      clientNonce, serverNonce: message.nonce,
    });
    endpoint.send({ type: "proof", proof });
    return undefined;
  }
  if (message.type === "welcome" && endpoint.serverNonce.length > 0) {
    const input = {
      role: "server" as const, cluster: credentials.cluster, channel, host: message.host,
      clientNonce, serverNonce: endpoint.serverNonce,
    };
    if (!proofMatches(credentials.secret, input, message.proof)) {
      return new MarsError("wrong-secret", `${endpoint.remote} could not prove the cluster secret`);
    }
    endpoint.peer = message.host;
    endpoint.opened();
    return undefined;
  }
  return new MarsError("protocol", `unexpected '${message.type}' during the handshake`);
}

function describe(address: Address): string {
  return address.kind === "unix" ? address.path : `${address.host}:${address.port}`;
}
