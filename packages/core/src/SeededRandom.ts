/**
 * mulberry32: a small, fast seeded PRNG. Tests, property checks, the crash
 * harness and the benchmarks draw from it so a printed seed replays exactly.
 * Not for anything secret.
 */

/** A generator of floats in [0, 1) determined entirely by `seed`. */
export const mulberry32 = (seed: number): (() => number) => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
