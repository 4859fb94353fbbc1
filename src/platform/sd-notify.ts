/** systemd's notify protocol (READY=1, STOPPING=1) over a unix datagram socket, through libc. */
import { ptr } from "bun:ffi";
import { chmodSync } from "node:fs";
import { describeErrno, lastErrno, libc } from "./libc.ts";

const addressFamilyUnix = 1;
const socketDatagram = 2;
const socketCloseOnExec = 0o2000000;
const socketAddressBytes = 110;
const socketPathBytesMax = 107;


/**
 * Sends `state` to $NOTIFY_SOCKET; does nothing when it is unset (not under systemd).
 * A leading '@' names an abstract socket, as systemd documents.
 */
export function notifySystemd(state: string, socketPath = process.env.NOTIFY_SOCKET): boolean {
  if (!socketPath) return false;
  const path = new TextEncoder().encode(socketPath);
  if (path.length > socketPathBytesMax) throw new Error(`NOTIFY_SOCKET is too long`);
  const address = new Uint8Array(socketAddressBytes);
  new DataView(address.buffer).setUint16(0, addressFamilyUnix, true);
  address.set(path, 2);
  if (path[0] === 0x40) address[2] = 0;
  const addressLength = 2 + path.length + (path[0] === 0x40 ? 0 : 1);
  const fd = libc.symbols.socket(addressFamilyUnix, socketDatagram | socketCloseOnExec, 0);
  if (fd < 0) throw new Error(`socket: ${describeErrno(lastErrno())}`);
  try {
    const message = new TextEncoder().encode(state);
    const sent = Number(libc.symbols.sendto(fd, ptr(message), message.length, 0, ptr(address),
      addressLength));
    if (sent < 0) throw new Error(`sendto ${socketPath}: ${describeErrno(lastErrno())}`);
    return true;
  } finally {
    libc.symbols.close(fd);
  }
}

/** Makes `path` (the control socket) reachable by its owner only: mode 0600. */
export function restrictToOwner(path: string): void {
  chmodSync(path, 0o600);
}
