// errno names from Node's table of the platform's values.
import { constants as osConstants } from 'node:os';

// the first name wins (EAGAIN, not EWOULDBLOCK)
const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** ECONNREFUSED for 111 or -111; `errno N` when unknown. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return ERRNO_NAMES.get(n) ?? `errno ${n}`;
}
