/** Randomness: the real source for production, and a seeded generator for simulations. */
import type { Random } from "./types.ts";

export const systemRandom: Random = {
  nextUint32(): number {
    return crypto.getRandomValues(new Uint32Array(1))[0]!;
  },
};

/** Fills `target` with cryptographically strong random bytes (secrets, nonces). */
export function secureRandomBytes(target: Uint8Array): Uint8Array {
  return crypto.getRandomValues(target);
}

/** A small seeded generator (xorshift128+ folded to 32 bits), deterministic across runs. */
export function seededRandom(seed: number): Random {
  let state0 = (seed ^ 0x9e3779b9) >>> 0 || 1;
  let state1 = (Math.imul(seed, 0x85ebca6b) ^ 0xc2b2ae35) >>> 0 || 2;
  return {
    nextUint32(): number {
      let s1 = state0;
      const s0 = state1;
      state0 = s0;
      s1 ^= s1 << 23;
      s1 ^= s1 >>> 17;
      s1 ^= s0;
      s1 ^= s0 >>> 26;
      state1 = s1 >>> 0;
      return (state0 + state1) >>> 0;
    },
  };
}
