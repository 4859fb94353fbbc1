/** sha256 of a whole file, streamed, for commands that verify replicas are byte-identical. */

export async function sha256OfFile(path: string): Promise<string> {
  const hasher = new Bun.CryptoHasher("sha256");
  for await (const chunk of Bun.file(path).stream()) hasher.update(chunk);
  return hasher.digest("hex");
}

/** An incremental sha256 whose result is hex text, for data read in pieces (a device). */
export function sha256TextHasher(): { update(data: Uint8Array): void; hex(): string } {
  const hasher = new Bun.CryptoHasher("sha256");
  return { update: (data) => void hasher.update(data), hex: () => hasher.digest("hex") };
}
