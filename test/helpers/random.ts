/** The seed of this run's random tests: TFACTL_TEST_SEED repeats a run; tests print it on failure. */
export const SEED = Number(process.env.TFACTL_TEST_SEED ?? Math.floor(Math.random() * 2 ** 31))

/** A reproducible random sequence in [0, 1) (mulberry32). */
export function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
