// SYN-ACK retransmits waiting for their server end. The kernel reports them on the
// request socket (cookie 0): the server's own socket exists only once the handshake
// completes, so they are kept by tuple until a connection record of that tuple comes.
import { AF_INET, AF_INET6, type KernelEvent } from '../decode/event.js';

/** SYN-ACK retransmits wait this long after the latest one for their tuple. */
export const SYNACK_PENDING_TTL_NS = 10e9;

export interface PendingSynAck {
  lastNs: number;
  /** segments retransmitted */
  count: number;
  /** the first few retransmit times */
  times: number[];
}

export interface PendingSynAcks {
  readonly size: number;
  /** Keeps one retransmit; returns how many older ones were pushed out (the map is full). */
  add(e: KernelEvent): number;
  /** Takes the retransmits of the tuple of `e`, if any. */
  take(e: KernelEvent): PendingSynAck | undefined;
  /** Forgets the tuples whose latest retransmit is older than the TTL; returns their retransmit count. */
  expire(nowNs: number): number;
  /** Forgets everything; returns the retransmit count. */
  clear(): number;
}

export function createPendingSynAcks(maxTuples: number, maxTimes: number): PendingSynAcks {
  return new PendingSynAckMap(Math.max(0, Math.floor(maxTuples)), Math.max(0, Math.floor(maxTimes)));
}

class PendingSynAckMap implements PendingSynAcks {
  /** ordered by latest retransmit: the first entry is the stalest */
  private readonly _map = new Map<string, PendingSynAck>();

  constructor(private readonly _maxTuples: number, private readonly _maxTimes: number) {}

  get size(): number {
    return this._map.size;
  }

  add(e: KernelEvent): number {
    const segs = e.segs > 0 ? e.segs : 1;
    if (this._maxTuples === 0) return segs;
    const key = tupleKey(e);
    let pushedOut = 0;
    let p = this._map.get(key);
    if (p === undefined) {
      if (this._map.size >= this._maxTuples) {
        const first = this._map.entries().next().value!;
        this._map.delete(first[0]);
        pushedOut = first[1].count;
      }
      p = { lastNs: e.tsNs, count: 0, times: [] };
    } else {
      this._map.delete(key); // re-inserted below: keeps the order by latest retransmit
    }
    p.lastNs = e.tsNs;
    p.count += segs;
    if (p.times.length < this._maxTimes) p.times.push(e.tsNs);
    this._map.set(key, p);
    return pushedOut;
  }

  take(e: KernelEvent): PendingSynAck | undefined {
    if (this._map.size === 0) return undefined;
    const key = tupleKey(e);
    const p = this._map.get(key);
    if (p !== undefined) this._map.delete(key);
    return p;
  }

  expire(nowNs: number): number {
    const expired = nowNs - SYNACK_PENDING_TTL_NS;
    let n = 0;
    for (const [key, p] of this._map) {
      if (p.lastNs > expired) break;
      this._map.delete(key);
      n += p.count;
    }
    return n;
  }

  clear(): number {
    let n = 0;
    for (const p of this._map.values()) n += p.count;
    this._map.clear();
    return n;
  }
}

const V4_MAPPED = 0xffff0000; // ::ffff:0:0/96, third word in memory order

/**
 * Identifies a server end before its socket exists: netns and 4-tuple. An IPv4
 * connection accepted by a dual-stack listener has an AF_INET6 child socket with
 * IPv4-mapped addresses; keyed as IPv4, it matches however its SYN-ACK was reported.
 */
function tupleKey(e: KernelEvent): string {
  if (e.family === AF_INET6 && e.laddr0 === 0 && e.laddr1 === 0 && e.laddr2 === V4_MAPPED &&
      e.raddr0 === 0 && e.raddr1 === 0 && e.raddr2 === V4_MAPPED) {
    return `${e.netns}/${AF_INET}/${e.laddr3}.0.0.0/${e.lport}/${e.raddr3}.0.0.0/${e.rport}`;
  }
  return `${e.netns}/${e.family}/${e.laddr0}.${e.laddr1}.${e.laddr2}.${e.laddr3}/${e.lport}/` +
    `${e.raddr0}.${e.raddr1}.${e.raddr2}.${e.raddr3}/${e.rport}`;
}
