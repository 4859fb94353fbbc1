/** Peer TCP inside mutual TLS: both sides show a certificate signed by the cluster's CA. */
import type { Socket } from "bun";
import { MarsError } from "../lib/errors.ts";
import { BunConnection, bunNetwork, socketHandlers, type SocketState } from "./network.ts";
import type { Address, Connection, ConnectionHandlers, Listener, Network } from "./types.ts";

export interface TlsFiles {
  readonly certFile: string;
  readonly keyFile: string;
  /** The CA that signs every member's certificate; a peer without one is refused. */
  readonly caFile: string;
}

function tlsOptions(files: TlsFiles) {
  return {
    cert: Bun.file(files.certFile), key: Bun.file(files.keyFile), ca: Bun.file(files.caFile),
    rejectUnauthorized: true,
  };
}

/**
 * A Network whose TCP connections are TLS with client certificates; unix sockets (control,
 * NBD) stay plain. A connection is handed to its handlers only after the TLS handshake
 * succeeded, so nothing is written in clear text or to an unverified peer.
 */
export function tlsNetwork(
  files: TlsFiles, handshakeFailed: (remote: string, reason: string) => void = () => {},
): Network {
  return {
    async listen(address, accept): Promise<Listener> {
      if (address.kind === "unix") return bunNetwork.listen(address, accept);
      const handlers = {
        ...socketHandlers((socket) => {
          socket.data = { connection: new BunConnection(socket, socket.remoteAddress) };
        }),
        handshake: (socket: Socket<SocketState>, success: boolean, error: Error | null) => {
          if (!success) {
            handshakeFailed(socket.remoteAddress, `TLS handshake failed: ${error?.message}`);
            return socket.terminate();
          }
          socket.data.connection.attach(accept(socket.data.connection));
        },
      };
      try {
        const server = Bun.listen<SocketState>({
          hostname: address.host, port: address.port, socket: handlers,
          tls: { ...tlsOptions(files), requestCert: true },
        });
        return { address: { ...address, port: server.port }, close: () => server.stop(true) };
      } catch (error) {
        const where = `${address.host}:${address.port}`;
        throw new MarsError("io", `cannot listen (TLS) on ${where}: ${error}`);
      }
    },

    async connect(address: Address, handlers: ConnectionHandlers): Promise<Connection> {
      if (address.kind === "unix") return bunNetwork.connect(address, handlers);
      const where = `${address.host}:${address.port}`;
      return new Promise<Connection>((resolve, reject) => {
        const plain = socketHandlers((socket) => {
          socket.data = { connection: new BunConnection(socket, where) };
        });
        const socketOptions = {
          ...plain,
          close: (socket: Socket<SocketState>, error?: Error) => {
            reject(new MarsError("peer-unreachable", `${where} closed during the TLS handshake`));
            plain.close(socket, error);
          },
          handshake: (socket: Socket<SocketState>, success: boolean, error: Error | null) => {
            if (!success) {
              socket.terminate();
              return reject(new MarsError("peer-unreachable",
                `TLS handshake with ${where} failed: ${error?.message}`));
            }
            socket.data.connection.attach(handlers);
            resolve(socket.data.connection);
          },
        };
        Bun.connect<SocketState>({
          hostname: address.host, port: address.port, socket: socketOptions,
          tls: tlsOptions(files),
        }).catch((error) => reject(new MarsError("peer-unreachable",
          `cannot connect to ${where}: ${error}`)));
      });
    },
  };
}
