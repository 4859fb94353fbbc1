/** zstd compression from the runtime (deterministic, so engine code may call it directly). */

export function zstdCompress(data: Uint8Array, level = 1): Uint8Array {
  return new Uint8Array(Bun.zstdCompressSync(data, { level }));
}

export function zstdDecompress(data: Uint8Array): Uint8Array {
  return new Uint8Array(Bun.zstdDecompressSync(data));
}
