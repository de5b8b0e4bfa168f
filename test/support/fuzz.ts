// A seeded PRNG for the property-based tests: the same seed gives the same inputs, so a
// failure names its seed and can be replayed. TCPSPAN_FUZZ_SEED=N replays one seed;
// TCPSPAN_FUZZ_SEED=random draws a new one (printed in every failure).

export interface Rng {
  readonly seed: number;
  /** uniform in [0, 1) */
  next(): number;
  /** integer in [lo, hi] */
  int(lo: number, hi: number): number;
  /** true with probability p */
  chance(p: number): boolean;
  pick<T>(items: readonly T[]): T;
  bytes(n: number): Buffer;
}

/** mulberry32: small, fast, and good enough to pick test inputs. */
export function createRng(seed: number): Rng {
  let a = seed >>> 0;
  const next = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const int = (lo: number, hi: number): number => lo + Math.floor(next() * (hi - lo + 1));
  return {
    seed,
    next,
    int,
    chance: (p) => next() < p,
    pick: (items) => items[int(0, items.length - 1)]!,
    bytes: (n) => {
      const b = Buffer.allocUnsafe(n);
      for (let i = 0; i < n; i++) b[i] = int(0, 255);
      return b;
    },
  };
}

/** The seed for a test: `fallback` unless TCPSPAN_FUZZ_SEED says otherwise. */
export function fuzzSeed(fallback: number): number {
  const env = process.env['TCPSPAN_FUZZ_SEED'];
  if (env === undefined || env === '') return fallback;
  if (env === 'random') return Math.floor(Math.random() * 2 ** 32);
  if (!/^\d+$/.test(env)) throw new Error(`TCPSPAN_FUZZ_SEED=${env}: expected a number or 'random'`);
  return Number(env) >>> 0;
}

/**
 * Runs `check` on `runs` inputs from `gen`, for at most `budgetMs` (the runs done by then
 * count). A failure is rethrown naming the seed, the run and the input.
 */
export function forAll<T>(seed: number, runs: number, budgetMs: number, gen: (rng: Rng) => T, check: (input: T) => void,
                          show: (input: T) => string = (x) => JSON.stringify(x)): number {
  const rng = createRng(seed);
  const stop = Date.now() + budgetMs;
  let i = 0;
  for (; i < runs && Date.now() < stop; i++) {
    const input = gen(rng);
    try {
      check(input);
    } catch (err) {
      const e = err as Error;
      e.message = `TCPSPAN_FUZZ_SEED=${seed}, run ${i}: ${e.message}\n  input: ${show(input).slice(0, 2000)}`;
      throw e;
    }
  }
  return i;
}
