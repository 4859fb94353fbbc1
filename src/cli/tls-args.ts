/** The --tls-cert/--tls-key/--tls-ca options: all three or none, recorded in the identity. */
import { MarsError } from "../lib/errors.ts";
import { absolutePath } from "../platform/host-name.ts";
import { bunNetwork } from "../platform/network.ts";
import { tlsNetwork, type TlsFiles } from "../platform/tls-network.ts";
import type { Network } from "../platform/types.ts";

export const tlsArgs = {
  "tls-cert": { type: "string", valueHint: "FILE", description: "This host's TLS certificate" },
  "tls-key": { type: "string", valueHint: "FILE", description: "Its private key" },
  "tls-ca": { type: "string", valueHint: "FILE", description: "The CA that signs every member" },
} as const;

export function tlsFilesOf(args: Record<string, unknown>): TlsFiles | undefined {
  const given = [args["tls-cert"], args["tls-key"], args["tls-ca"]];
  if (given.every((value) => value === undefined)) return undefined;
  if (!given.every((value) => typeof value === "string")) {
    throw new MarsError("usage", "TLS needs all of --tls-cert, --tls-key and --tls-ca");
  }
  const [certFile, keyFile, caFile] = (given as string[]).map(absolutePath);
  return { certFile: certFile!, keyFile: keyFile!, caFile: caFile! };
}

/** The network peers are reached over: mutual TLS when configured, plain TCP otherwise. */
export function peerNetwork(
  tls: TlsFiles | undefined, handshakeFailed?: (remote: string, reason: string) => void,
): Network {
  return tls ? tlsNetwork(tls, handshakeFailed) : bunNetwork;
}
