// Ring buffer sizes: a power of two (the kernel's rule), one page at least, 1 GiB at most.

/** Room for a consumer's slow first second (cold JIT) at full connection rate: about 1 s of events at 200k/s. */
export const DEFAULT_RING_BYTES = 32 << 20;
export const MIN_RING_BYTES = 4096;
export const MAX_RING_BYTES = 2 ** 30;

export function isValidRingBytes(n: number): boolean {
  return Number.isInteger(n) && n >= MIN_RING_BYTES && n <= MAX_RING_BYTES && (n & (n - 1)) === 0;
}
