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
import { createHash, randomFillSync } from 'node:crypto';

export interface TraceIdentity {
  /** 32 lowercase hex digits */
  traceId: string;
  /** 16 lowercase hex digits */
  clientSpanId: string;
  /** 16 lowercase hex digits */
  serverSpanId: string;
}

const DOMAIN = Buffer.from('tcpspan/trace/v1', 'latin1');

/** The ids both ends of one connection compute from its ISNs. */
export function traceIdentityFromIsn(clientIsn: number, serverIsn: number): TraceIdentity {
  const isns = Buffer.allocUnsafe(8);
  isns.writeUInt32BE(clientIsn >>> 0, 0);
  isns.writeUInt32BE(serverIsn >>> 0, 4);
  // an all-zero id is invalid in W3C trace context; so is a span its own parent
  for (let retry = 0; ; retry++) {
    const h = createHash('sha256').update(DOMAIN).update(isns);
    if (retry > 0) h.update(Buffer.of(retry & 0xff));
    const d = h.digest();
    if (isZero(d, 0, 16) || isZero(d, 16, 24) || isZero(d, 24, 32) || d.compare(d, 16, 24, 24, 32) === 0) continue;
    return {
      traceId: d.toString('hex', 0, 16),
      clientSpanId: d.toString('hex', 16, 24),
      serverSpanId: d.toString('hex', 24, 32),
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
