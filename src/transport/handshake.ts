/** Mutual challenge-response authentication with the cluster secret (HMAC-SHA256, fresh nonces). */
import { assert } from "../lib/assert.ts";
import { constantTimeEqual, hmacSha256 } from "../platform/hash.ts";
import type { Random } from "../platform/types.ts";
import { nonceBytes, type ChannelKind } from "./messages.ts";

/** What a host proves it knows, and names itself by, when it opens a channel. */
export interface Credentials {
  readonly cluster: string;
  readonly host: string;
  readonly secret: Uint8Array;
}

export const secretBytesMin = 32;

const encoder = new TextEncoder();

/** A fresh nonce from the injected random source (the real one is cryptographically strong). */
export function makeNonce(random: Random): Uint8Array {
  const nonce = new Uint8Array(nonceBytes);
  const view = new DataView(nonce.buffer);
  for (let offset = 0; offset < nonceBytes; offset += 4) {
    view.setUint32(offset, random.nextUint32());
  }
  return nonce;
}

export interface ProofInput {
  readonly role: "client" | "server";
  readonly cluster: string;
  readonly channel: ChannelKind;
  /** The host proving itself. */
  readonly host: string;
  readonly clientNonce: Uint8Array;
  readonly serverNonce: Uint8Array;
}

/**
 * HMAC over everything the two sides agreed on: role (so a proof cannot be reflected back),
 * cluster, channel, the prover's name and both nonces (so it cannot be replayed).
 */
export function computeProof(secret: Uint8Array, input: ProofInput): Uint8Array {
  assert(secret.length >= secretBytesMin, "the cluster secret is long enough");
  assert(input.clientNonce.length === nonceBytes, "client nonce has its size");
  assert(input.serverNonce.length === nonceBytes, "server nonce has its size");
  const header = encoder.encode(
    `mars-${input.role}\n${input.cluster}\n${input.channel}\n${input.host}\n`,
  );
  return hmacSha256(secret, header, input.clientNonce, input.serverNonce);
}

export function proofMatches(secret: Uint8Array, input: ProofInput, proof: Uint8Array): boolean {
  return constantTimeEqual(computeProof(secret, input), proof);
}
