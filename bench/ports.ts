// Listening ports for the load generators and test servers: a fresh one per run.
//
// Why a second `npm run bench` used to fail with "bind ... Address already in use": the ports
// were 46000 + pid % 1000, inside the ephemeral range (32768-60999 here). The memory test's
// 10,000 client sockets close with TIME_WAIT on their ephemeral ports, and a TIME_WAIT socket
// whose owner never set SO_REUSEADDR refuses a later bind for a minute even with SO_REUSEADDR
// on the new listener. Ports below the ephemeral range are never a client's, and a port no
// socket uses (in any state, TIME_WAIT included) cannot collide with anything.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const LOWEST = 10_000;
const taken = new Set<number>();

function ephemeralRange(): [number, number] {
  try {
    const [lo, hi] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (lo && hi) return [lo, hi];
  } catch { /* not Linux-like: assume the default */ }
  return [32768, 60999];
}

/** Any TCP socket (listening, connected, TIME_WAIT) whose local port is `port`. */
function inUse(port: number): boolean {
  const out = execFileSync('ss', ['-Htan', `sport = :${port}`], { encoding: 'utf8' });
  return out.trim() !== '';
}

/** A port outside the ephemeral range that no socket uses and this run has not handed out. */
export function freshPort(): number {
  const [lo, hi] = ephemeralRange();
  // below the ephemeral range when there is room, else above it
  const [from, to] = lo - LOWEST >= 2000 ? [LOWEST, lo - 1] : [hi + 1, 65535];
  for (let attempt = 0; attempt < 100; attempt++) {
    const port = from + Math.floor(Math.random() * (to - from + 1));
    if (taken.has(port) || inUse(port)) continue;
    taken.add(port);
    return port;
  }
  throw new Error(`bench: no free TCP port in ${from}-${to} after 100 tries (see ss -tan)`);
}
