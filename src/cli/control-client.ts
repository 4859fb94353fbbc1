/** Talks to a running engine over its control socket: one request, one reply. */
import { MarsError } from "../lib/errors.ts";
import type { ControlReply, ControlRequest, ControlState } from "../engine/control.ts";
import type { Network } from "../platform/types.ts";
import { encodeFrame, FrameReader, frameBytesMax } from "../transport/framing.ts";

/** An engine that does not answer within this long is treated as failed. */
export const controlReplyTimeoutMs = 30_000;

export async function askEngine(
  network: Network, socketPath: string, request: ControlRequest,
): Promise<ControlReply> {
  let settle: { resolve(reply: ControlReply): void; reject(error: Error): void } | undefined;
  const replied = new Promise<ControlReply>((resolve, reject) => { settle = { resolve, reject }; });
  const reader = new FrameReader((value) => settle?.resolve(value as ControlReply));
  reader.payloadBytesMax = frameBytesMax;
  const connection = await network.connect({ kind: "unix", path: socketPath }, {
    data: (chunk) => reader.push(chunk),
    drain: () => {},
    closed: () => settle?.reject(new MarsError("engine", "the engine closed the control socket")),
  }).catch((error) => {
    throw new MarsError("engine", `the engine holds the home but does not answer: ${error}`);
  });
  const timer = setTimeout(() => settle?.reject(
    new MarsError("engine", "the engine did not answer in time")), controlReplyTimeoutMs);
  try {
    connection.write(encodeFrame(request));
    const reply = await replied;
    if (!reply.ok) throw new MarsError(reply.code, reply.message);
    return reply;
  } finally {
    clearTimeout(timer);
    connection.destroy();
  }
}

/** The engine's map and peers; only the keys under `prefixes` when given. */
export async function engineState(
  network: Network, socketPath: string, prefixes?: readonly string[],
): Promise<ControlState> {
  const reply = await askEngine(network, socketPath,
    prefixes ? { op: "state", prefixes } : { op: "state" });
  if (!reply.ok || !reply.state) throw new MarsError("engine", "the engine sent no state");
  return reply.state;
}
