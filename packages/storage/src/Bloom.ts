/**
 * A bloom filter over row keys (LevelDB's scheme: one 32-bit hash, double
 * hashing by rotation for the k probes). A negative answer is certain, so a
 * point read skips the table without touching its blocks; the false-positive
 * rate follows from bits per key (≈1% at 10). Serialized form: the bit array
 * followed by one byte holding k (FORMAT.md, SSTable bloom block).
 */

/** 32-bit hash of a binary-string key (murmur3-style mixing, seeded). */
export const hashKey = (key: string): number => {
  let h = 0x9747b28c ^ key.length
  for (let i = 0; i < key.length; i++) {
    let k = key.charCodeAt(i) & 0xff
    k = Math.imul(k, 0xcc9e2d51)
    k = (k << 15) | (k >>> 17)
    k = Math.imul(k, 0x1b873593)
    h ^= k
    h = (h << 13) | (h >>> 19)
    h = (Math.imul(h, 5) + 0xe6546b64) | 0
  }
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Probes per key for a given budget: bitsPerKey × ln 2, clamped to 1..30. */
export const probesFor = (bitsPerKey: number): number => Math.min(30, Math.max(1, Math.round(bitsPerKey * 0.69)))

/** Builds the serialized filter for a set of key hashes. */
export const build = (hashes: ArrayLike<number>, bitsPerKey: number): Uint8Array => {
  const k = probesFor(bitsPerKey)
  // At least 64 bits so tiny tables do not get absurd false-positive rates.
  const bits = Math.max(64, Math.ceil(hashes.length * bitsPerKey))
  const bytes = Math.ceil(bits / 8)
  const nbits = bytes * 8
  const out = new Uint8Array(bytes + 1)
  for (let i = 0; i < hashes.length; i++) {
    let h = hashes[i] as number
    const delta = ((h >>> 17) | (h << 15)) >>> 0
    for (let j = 0; j < k; j++) {
      const bit = h % nbits
      out[bit >>> 3] = (out[bit >>> 3] as number) | (1 << (bit & 7))
      h = (h + delta) >>> 0
    }
  }
  out[bytes] = k
  return out
}

/** False means the key is certainly absent. A malformed filter answers true (never hides a key). */
export const mayContain = (filter: Uint8Array, hash: number): boolean => {
  if (filter.length < 2) return true
  const bytes = filter.length - 1
  const k = filter[bytes] as number
  if (k < 1 || k > 30) return true
  const nbits = bytes * 8
  let h = hash
  const delta = ((h >>> 17) | (h << 15)) >>> 0
  for (let j = 0; j < k; j++) {
    const bit = h % nbits
    if (((filter[bit >>> 3] as number) & (1 << (bit & 7))) === 0) return false
    h = (h + delta) >>> 0
  }
  return true
}
