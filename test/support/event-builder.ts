// Builds KernelEvent records the way the capture layer decodes them, for driving
// the correlator without a kernel.
import { isIPv4, isIPv6 } from 'node:net';
import {
  AF_INET, AF_INET6, EventFlag, EventKind, TcpState, newKernelEvent, type KernelEvent,
} from '../../src/decode/event.js';
import type { Correlator } from '../../src/correlate/correlator.js';

/** A CLOCK_MONOTONIC base for test timelines (about 17 minutes after boot). */
export const T0 = 1_000_000_000_000;
/** T0 plus n microseconds. */
export const us = (n: number): number => T0 + n * 1_000;
/** T0 plus n milliseconds. */
export const ms = (n: number): number => T0 + n * 1_000_000;

export const NETNS = 4026531840;

/** An address's 4 or 16 network-order bytes. */
export function addressBytes(addr: string): Buffer {
  if (isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  if (!isIPv6(addr)) throw new Error(`not an IP address: ${addr}`);
  let text = addr;
  const tail: number[] = [];
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const b = v4[1]!.split('.').map(Number);
    tail.push((b[0]! << 8) | b[1]!, (b[2]! << 8) | b[3]!);
    text = text.slice(0, -v4[1]!.length) + '0:0';
  }
  const [head, rest] = text.split('::') as [string, string | undefined];
  const parse = (s: string | undefined) => (s ? s.split(':').filter((x) => x !== '').map((x) => parseInt(x, 16)) : []);
  const h = parse(head), r = parse(rest);
  let groups = rest === undefined ? h : [...h, ...new Array<number>(8 - h.length - r.length).fill(0), ...r];
  if (tail.length) groups = [...groups.slice(0, 6), ...tail];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, 2 * i));
  return out;
}

/**
 * The four 32-bit words the decoder keeps for an address: memory order, i.e. the
 * network-order bytes read little-endian (IPv4 in the first word, the rest 0).
 */
export function addressWords(addr: string): [number, number, number, number] {
  const b = Buffer.alloc(16);
  addressBytes(addr).copy(b);
  return [b.readUInt32LE(0), b.readUInt32LE(4), b.readUInt32LE(8), b.readUInt32LE(12)];
}

/** tcp_sock counters (EventFlag.Stats). */
export function stats(bytesAcked: number, bytesReceived: number, segsIn: number, segsOut: number, srttUs: number): Partial<KernelEvent> {
  return { flags: EventFlag.Stats, bytesAcked, bytesReceived, segsIn, segsOut, srttUs };
}

/** The receive-path RTT summary. */
export function rtt(count: number, minUs: number, maxUs: number, sumUs: number): Partial<KernelEvent> {
  return { rttCount: count, rttMinUs: minUs, rttMaxUs: maxUs, rttSumUs: sumUs };
}

/** Initial sequence numbers (EventFlag.Isn), on the transition to ESTABLISHED. */
export function isn(local: number, peer: number): Partial<KernelEvent> {
  return { flags: EventFlag.Isn, isnLocal: local, isnPeer: peer };
}

/** Process context (EventFlag.Pid). */
export function pid(pidValue: number, comm: string): Partial<KernelEvent> {
  return { flags: EventFlag.Pid, pid: pidValue, comm };
}

export interface EndpointSpec {
  cookie: number;
  local: string;
  lport: number;
  peer: string;
  rport: number;
  netns?: number;
}

/** Events of one socket (one connection end). */
export class Endpoint {
  constructor(readonly spec: EndpointSpec) {}

  /** A STATE record. CLOSE>SYN_SENT has lport 0: the kernel picks the port after it. */
  state(tsNs: number, from: number, to: number, ...extras: Partial<KernelEvent>[]): KernelEvent {
    const e = this.event(EventKind.State, tsNs, to, extras);
    e.oldstate = from;
    if (from === TcpState.CLOSE && to === TcpState.SYN_SENT) e.lport = 0;
    return e;
  }

  retransmit(tsNs: number, state: number, tcpFlags: number, segs: number, error: number, ...extras: Partial<KernelEvent>[]): KernelEvent {
    const e = this.event(EventKind.Retransmit, tsNs, state, extras);
    e.tcpFlags = tcpFlags;
    e.segs = segs;
    e.error = error;
    return e;
  }

  resetReceived(tsNs: number, state: number, ...extras: Partial<KernelEvent>[]): KernelEvent {
    return this.event(EventKind.ResetReceived, tsNs, state, extras);
  }

  resetSent(tsNs: number, state: number, ...extras: Partial<KernelEvent>[]): KernelEvent {
    return this.event(EventKind.ResetSent, tsNs, state, extras);
  }

  /** An error report; the socket is closed by then. */
  error(tsNs: number, errno: number, ...extras: Partial<KernelEvent>[]): KernelEvent {
    const e = this.event(EventKind.Error, tsNs, TcpState.CLOSE, extras);
    e.error = errno;
    return e;
  }

  /** A SYN-ACK retransmit for this (future) server end: cookie 0, state SYN_RECV. */
  synAckRetransmit(tsNs: number): KernelEvent {
    const e = this.event(EventKind.SynAckRetransmit, tsNs, TcpState.SYN_RECV, []);
    e.cookie = 0;
    e.segs = 1;
    e.tcpFlags = 0x12;
    return e;
  }

  private event(kind: number, tsNs: number, state: number, extras: Partial<KernelEvent>[]): KernelEvent {
    const s = this.spec;
    const e = newKernelEvent();
    const family = isIPv4(s.local) ? AF_INET : AF_INET6;
    [e.laddr0, e.laddr1, e.laddr2, e.laddr3] = addressWords(s.local);
    [e.raddr0, e.raddr1, e.raddr2, e.raddr3] = addressWords(s.peer);
    Object.assign(e, { kind, tsNs, state, family, cookie: s.cookie, lport: s.lport, rport: s.rport, netns: s.netns ?? NETNS });
    for (const x of extras) {
      const flags = e.flags | (x.flags ?? 0);
      Object.assign(e, x);
      e.flags = flags;
    }
    return e;
  }
}

/**
 * Feeds events through ONE reused object, as the ring reader does, and scribbles
 * over it after each call: a correlator that kept a reference would see garbage.
 */
export function drive(c: Correlator, events: readonly KernelEvent[]): void {
  const scratch = newKernelEvent();
  for (const e of events) {
    Object.assign(scratch, e);
    c.onEvent(scratch);
    for (const k of Object.keys(scratch) as (keyof KernelEvent)[]) {
      if (k === 'comm') scratch.comm = 'scribbled';
      else scratch[k] = 0xdead;
    }
  }
}
