// Trace identity of a connection, computed alike by the tcpspan on each end
// without them talking: both ends see the same two initial sequence numbers
// (crosswise: the client's isn_local is the server's isn_peer), and NAT rewrites
// addresses and ports but not sequence numbers.
//
//   digest = SHA-256("tcpspan/trace/v1" || client ISN (u32 BE) || server ISN (u32 BE) [|| retry])
//   traceId = digest[0..16)   clientSpanId = digest[16..24)   serverSpanId = digest[24..32)
//
// The server span's parent is the client span (RPC convention); the client span is
// a root. Two unrelated connections share ids only if both ISN pairs match (64 bits).
// Connections without an observed handshake get random ids.
import { randomFillSync } from 'node:crypto';
import { sha256OneBlock } from './sha256-block.js';

export interface TraceIdentity {
  /** 32 lowercase hex digits */
  traceId: string;
  /** 16 lowercase hex digits */
  clientSpanId: string;
  /** 16 lowercase hex digits */
  serverSpanId: string;
}

const DOMAIN = Buffer.from('tcpspan/trace/v1', 'latin1');
// the hash input, reused: DOMAIN || client ISN || server ISN [|| retry]
const input = Buffer.alloc(DOMAIN.length + 9);
DOMAIN.copy(input, 0);

// Both ends of a connection on this host ask for the same pair, one right after the other.
// Keyed by the client ISN, holding the server ISN it came with.
const recent = new Map<number, { serverIsn: number; id: TraceIdentity }>();
const RECENT_MAX = 4096;

/** The ids both ends of one connection compute from its ISNs. */
export function traceIdentityFromIsn(clientIsn: number, serverIsn: number): TraceIdentity {
  const c = clientIsn >>> 0, s = serverIsn >>> 0;
  const hit = recent.get(c);
  if (hit !== undefined && hit.serverIsn === s) return hit.id;
  const id = computeIdentity(c, s);
  if (recent.size >= RECENT_MAX) recent.clear();
  recent.set(c, { serverIsn: s, id });
  return id;
}

const digest = new Uint32Array(8);
const digestBytes = Buffer.alloc(32);

function computeIdentity(clientIsn: number, serverIsn: number): TraceIdentity {
  input.writeUInt32BE(clientIsn >>> 0, DOMAIN.length);
  input.writeUInt32BE(serverIsn >>> 0, DOMAIN.length + 4);
  // an all-zero id is invalid in W3C trace context; so is a span its own parent
  for (let retry = 0; ; retry++) {
    input[DOMAIN.length + 8] = retry & 0xff;
    sha256OneBlock(input, retry > 0 ? DOMAIN.length + 9 : DOMAIN.length + 8, digest);
    const d = digest;
    if ((d[0]! | d[1]! | d[2]! | d[3]!) === 0 || (d[4]! | d[5]!) === 0 || (d[6]! | d[7]!) === 0 ||
        (d[4] === d[6] && d[5] === d[7])) continue;
    for (let i = 0; i < 8; i++) digestBytes.writeUInt32BE(d[i]!, 4 * i);
    return {
      traceId: digestBytes.toString('hex', 0, 16),
      clientSpanId: digestBytes.toString('hex', 16, 24),
      serverSpanId: digestBytes.toString('hex', 24, 32),
    };
  }
}

// One syscall's worth of randomness serves many connections.
const POOL_SIZE = 24 * 256;
const pool = Buffer.alloc(POOL_SIZE);
let poolAt = POOL_SIZE;

/** Random, never all-zero, ids for a connection with no shared identity. */
export function randomTraceIdentity(): { traceId: string; spanId: string } {
  for (;;) {
    if (poolAt + 24 > POOL_SIZE) {
      randomFillSync(pool);
      poolAt = 0;
    }
    const at = poolAt;
    poolAt += 24;
    if (isZero(pool, at, at + 16) || isZero(pool, at + 16, at + 24)) continue;
    return { traceId: pool.toString('hex', at, at + 16), spanId: pool.toString('hex', at + 16, at + 24) };
  }
}

function isZero(b: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (b[i] !== 0) return false;
  return true;
}
