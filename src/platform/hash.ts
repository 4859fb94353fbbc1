/** Deterministic digests (xxHash3, crc32, sha256, HMAC) from the runtime's native code. */

/** 64-bit xxHash3 of `data`, as a bigint. */
export function xxHash3(data: Uint8Array, seed = 0n): bigint {
  return BigInt.asUintN(64, BigInt(Bun.hash.xxHash3(data, seed)));
}

/** IEEE crc32 of `data`. */
export function crc32(data: Uint8Array): number {
  return Bun.hash.crc32(data) >>> 0;
}

/** sha256 of the concatenation of `parts`. */
export function sha256(...parts: Uint8Array[]): Uint8Array {
  const hasher = new Bun.CryptoHasher("sha256");
  for (const part of parts) hasher.update(part);
  return new Uint8Array(hasher.digest());
}

/** HMAC-SHA256 of the concatenation of `parts` under `key`. */
export function hmacSha256(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const hasher = new Bun.CryptoHasher("sha256", key);
  for (const part of parts) hasher.update(part);
  return new Uint8Array(hasher.digest());
}

/** Compares two byte strings in time independent of where they differ. */
export function constantTimeEqual(left: Uint8Array, right: Uint8Array): boolean {
  if (left.length !== right.length) return false;
  let difference = 0;
  for (let index = 0; index < left.length; index++) difference |= left[index]! ^ right[index]!;
  return difference === 0;
}

/** An incremental sha256, for digests of data that arrives in pieces (a growing logfile). */
export interface IncrementalDigest {
  update(data: Uint8Array): void;
  /** The digest of everything fed so far; the hasher stays usable. */
  digest(): Uint8Array;
}

export function sha256Incremental(): IncrementalDigest {
  const hasher = new Bun.CryptoHasher("sha256");
  return {
    update(data: Uint8Array): void {
      hasher.update(data);
    },
    digest(): Uint8Array {
      return new Uint8Array(hasher.copy().digest());
    },
  };
}
