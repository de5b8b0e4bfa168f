// Builds the kernel's records the way the capture layer decodes them, for driving
// the correlator without a kernel.
import { isIPv4, isIPv6 } from 'node:net';
import {
  AF_INET, AF_INET6, EventFlag, EventKind, Life, MAX_TRANSITIONS, TcpState, newKernelEvent, type KernelEvent,
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

/**
 * What the kernel sees happen to a socket, one step at a time, in the shape the
 * kernel used to send it: one record per state change (with the counters at that
 * moment) and one per rare event. simulateKernel() turns steps into the records the
 * BPF programs send now (bpf/tcpspan.bpf.c): the life kept per socket, an Open record
 * at ESTABLISHED, a Close record at CLOSE, rare events with what the life is.
 */
export interface KernelStep {
  kind: StepKind;
  tsNs: number;
  cookie: number;
  laddr0: number; laddr1: number; laddr2: number; laddr3: number;
  raddr0: number; raddr1: number; raddr2: number; raddr3: number;
  netns: number;
  lport: number;
  rport: number;
  family: number;
  flags: number;
  oldstate: number;
  state: number;
  /** passive open: when the SYN arrived (0: not seen) */
  synNs: number;
  bytesAcked: number;
  bytesReceived: number;
  rttSumUs: number;
  rttCount: number;
  rttMinUs: number;
  rttMaxUs: number;
  srttUs: number;
  segsIn: number;
  segsOut: number;
  isnLocal: number;
  isnPeer: number;
  pid: number;
  comm: string;
  error: number;
  seq: number;
  segs: number;
  tcpFlags: number;
  /** how the socket took its local port (PortOrigin), which the kernel notes for a life first seen open */
  portOrigin: number;
}

export const StepKind = { State: 0, Retransmit: 1, SynAckRetransmit: 2, ResetReceived: 3, ResetSent: 4, Error: 5 } as const;
export type StepKind = (typeof StepKind)[keyof typeof StepKind];

const STEP_TO_EVENT: Record<number, number> = {
  [StepKind.Retransmit]: EventKind.Retransmit,
  [StepKind.SynAckRetransmit]: EventKind.SynAckRetransmit,
  [StepKind.ResetReceived]: EventKind.ResetReceived,
  [StepKind.ResetSent]: EventKind.ResetSent,
  [StepKind.Error]: EventKind.Error,
};

function newStep(): KernelStep {
  return {
    kind: StepKind.State, tsNs: 0, cookie: 0, laddr0: 0, laddr1: 0, laddr2: 0, laddr3: 0, raddr0: 0, raddr1: 0, raddr2: 0,
    raddr3: 0, netns: 0, lport: 0, rport: 0, family: 0, flags: 0, oldstate: 0, state: 0, synNs: 0, bytesAcked: 0,
    bytesReceived: 0, rttSumUs: 0, rttCount: 0, rttMinUs: 0, rttMaxUs: 0, srttUs: 0, segsIn: 0, segsOut: 0, isnLocal: 0,
    isnPeer: 0, pid: 0, comm: '', error: 0, seq: 0, segs: 0, tcpFlags: 0, portOrigin: 0,
  };
}

/** tcp_sock counters (EventFlag.Stats). */
export function stats(bytesAcked: number, bytesReceived: number, segsIn: number, segsOut: number, srttUs: number): Partial<KernelStep> {
  return { flags: EventFlag.Stats, bytesAcked, bytesReceived, segsIn, segsOut, srttUs };
}

/** The receive-path RTT summary. */
export function rtt(count: number, minUs: number, maxUs: number, sumUs: number): Partial<KernelStep> {
  return { rttCount: count, rttMinUs: minUs, rttMaxUs: maxUs, rttSumUs: sumUs };
}

/** Initial sequence numbers (EventFlag.Isn), on the transition to ESTABLISHED. */
export function isn(local: number, peer: number): Partial<KernelStep> {
  return { flags: EventFlag.Isn, isnLocal: local, isnPeer: peer };
}

/** Process context (EventFlag.Pid). */
export function pid(pidValue: number, comm: string): Partial<KernelStep> {
  return { flags: EventFlag.Pid, pid: pidValue, comm };
}

export interface EndpointSpec {
  cookie: number;
  local: string;
  lport: number;
  peer: string;
  rport: number;
  netns?: number;
  /** how the socket took its local port (PortOrigin; default Unknown) */
  portOrigin?: number;
}

/** Steps of one socket (one connection end). */
export class Endpoint {
  constructor(readonly spec: EndpointSpec) {}

  /** A state change. CLOSE>SYN_SENT has lport 0: the kernel picks the port after it. */
  state(tsNs: number, from: number, to: number, ...extras: Partial<KernelStep>[]): KernelStep {
    const e = this.step(StepKind.State, tsNs, to, extras);
    e.oldstate = from;
    if (from === TcpState.CLOSE && to === TcpState.SYN_SENT) e.lport = 0;
    return e;
  }

  retransmit(tsNs: number, state: number, tcpFlags: number, segs: number, error: number, ...extras: Partial<KernelStep>[]): KernelStep {
    const e = this.step(StepKind.Retransmit, tsNs, state, extras);
    e.tcpFlags = tcpFlags;
    e.segs = segs;
    e.error = error;
    return e;
  }

  resetReceived(tsNs: number, state: number, ...extras: Partial<KernelStep>[]): KernelStep {
    return this.step(StepKind.ResetReceived, tsNs, state, extras);
  }

  resetSent(tsNs: number, state: number, ...extras: Partial<KernelStep>[]): KernelStep {
    return this.step(StepKind.ResetSent, tsNs, state, extras);
  }

  /** An error report; the socket is closed by then. */
  error(tsNs: number, errno: number, ...extras: Partial<KernelStep>[]): KernelStep {
    const e = this.step(StepKind.Error, tsNs, TcpState.CLOSE, extras);
    e.error = errno;
    return e;
  }

  /** A SYN-ACK retransmit for this (future) server end: cookie 0, state SYN_RECV. */
  synAckRetransmit(tsNs: number): KernelStep {
    const e = this.step(StepKind.SynAckRetransmit, tsNs, TcpState.SYN_RECV, []);
    e.cookie = 0;
    e.segs = 1;
    e.tcpFlags = 0x12;
    return e;
  }

  private step(kind: StepKind, tsNs: number, state: number, extras: Partial<KernelStep>[]): KernelStep {
    const s = this.spec;
    const e = newStep();
    const family = isIPv4(s.local) ? AF_INET : AF_INET6;
    [e.laddr0, e.laddr1, e.laddr2, e.laddr3] = addressWords(s.local);
    [e.raddr0, e.raddr1, e.raddr2, e.raddr3] = addressWords(s.peer);
    Object.assign(e, { kind, tsNs, state, family, cookie: s.cookie, lport: s.lport, rport: s.rport, netns: s.netns ?? NETNS, portOrigin: s.portOrigin ?? 0 });
    for (const x of extras) {
      const flags = e.flags | (x.flags ?? 0);
      Object.assign(e, x);
      e.flags = flags;
    }
    return e;
  }
}

/** A socket's life as the kernel keeps it in socket storage. */
export interface SimLife {
  rec: KernelEvent;
  closed: boolean;
}

function copyRecord(e: KernelEvent): KernelEvent {
  return { ...e, transNs: [...e.transNs], transState: [...e.transState] };
}

function setTuple(rec: KernelEvent, s: KernelStep): void {
  Object.assign(rec, {
    laddr0: s.laddr0, laddr1: s.laddr1, laddr2: s.laddr2, laddr3: s.laddr3,
    raddr0: s.raddr0, raddr1: s.raddr1, raddr2: s.raddr2, raddr3: s.raddr3,
    family: s.family, netns: s.netns, lport: s.lport, rport: s.rport, cookie: s.cookie,
  });
}

/** The kernel's socket storage: the life kept per socket (cookie). */
export type SocketStorage = Map<number, SimLife>;

/**
 * The records the BPF programs send for these steps, in order (see the comment on
 * KernelStep). `storage` is the kernel's socket storage, kept across calls.
 */
export function simulateKernel(steps: readonly KernelStep[], storage: SocketStorage = new Map()): KernelEvent[] {
  const lives = storage;
  const out: KernelEvent[] = [];
  for (const s of steps) {
    if (s.kind !== StepKind.State) {
      const e = newKernelEvent();
      setTuple(e, s);
      Object.assign(e, { kind: STEP_TO_EVENT[s.kind]!, tsNs: s.tsNs, state: s.state, error: s.error, seq: s.seq, segs: s.segs, tcpFlags: s.tcpFlags });
      let life = lives.get(s.cookie);
      if (life === undefined && s.kind !== StepKind.SynAckRetransmit && s.cookie !== 0 &&
          s.state !== TcpState.TIME_WAIT && s.state !== TcpState.NEW_SYN_RECV && s.state !== TcpState.CLOSE) {
        // socket_event(): a full socket seen for the first time, and not closed, gets a life (start: now)
        const rec = newKernelEvent();
        setTuple(rec, s);
        rec.startNs = s.tsNs;
        life = { rec, closed: false };
        lives.set(s.cookie, life);
      }
      if (s.kind === StepKind.SynAckRetransmit || life === undefined || life.closed) {
        e.flags = EventFlag.Untracked;
        e.life = Life.None;
      } else {
        const r = life.rec;
        e.lifeStartNs = lifeOf(r) === Life.Midway ? r.startNs : r.transNs[0]!;
        e.life = lifeOf(r);
        if (e.lport === 0 && r.lport !== 0) { e.lport = r.lport; e.rport = r.rport; }
        if (s.kind === StepKind.Retransmit) {
          if (s.error !== 0) r.retransFailed++;
          else r.retransSegs += s.segs;
        }
      }
      out.push(e);
      continue;
    }
    const start = (s.oldstate === TcpState.CLOSE && s.state === TcpState.SYN_SENT) ||
      (s.oldstate === TcpState.LISTEN && s.state === TcpState.SYN_RECV);
    let life = lives.get(s.cookie);
    if (life === undefined || (start && (life.rec.nTrans > 0 || life.closed))) {
      const rec = newKernelEvent();
      setTuple(rec, s);
      rec.startNs = s.tsNs;
      life = { rec, closed: false };
      lives.set(s.cookie, life);
    } else if (life.closed) {
      continue; // nothing after CLOSE until a new start
    }
    const r = life.rec;
    const prevReceived = r.bytesReceived, hadStats = (r.flags & EventFlag.Stats) !== 0;
    if (r.nTrans === 0) {
      r.firstOldstate = s.oldstate;
      if (!start) r.portOrigin = s.portOrigin;
    }
    if (r.nTrans < MAX_TRANSITIONS) { r.transNs[r.nTrans] = s.tsNs; r.transState[r.nTrans] = s.state; }
    r.nTrans++;
    r.state = s.state;
    if (s.lport !== 0 && s.rport !== 0) setTuple(r, s);
    if ((s.flags & EventFlag.Pid) !== 0 && (r.flags & EventFlag.Pid) === 0) {
      r.flags |= EventFlag.Pid; r.pid = s.pid; r.comm = s.comm;
    }
    if ((s.flags & EventFlag.Stats) !== 0) {
      r.flags |= EventFlag.Stats;
      Object.assign(r, { bytesAcked: s.bytesAcked, bytesReceived: s.bytesReceived, segsIn: s.segsIn, segsOut: s.segsOut, srttUs: s.srttUs });
    }
    if (s.rttCount > 0) Object.assign(r, { rttCount: s.rttCount, rttMinUs: s.rttMinUs, rttMaxUs: s.rttMaxUs, rttSumUs: s.rttSumUs });
    if ((s.flags & EventFlag.Isn) !== 0 && (r.flags & EventFlag.Isn) === 0) {
      r.flags |= EventFlag.Isn; r.isnLocal = s.isnLocal; r.isnPeer = s.isnPeer;
    }
    if (s.state === TcpState.ESTABLISHED) {
      if (r.firstOldstate === TcpState.LISTEN && r.transState[0] === TcpState.SYN_RECV && s.synNs > 0 && s.synNs <= r.startNs) {
        r.startNs = s.synNs;
        r.flags |= EventFlag.SynSockops;
      }
      out.push({ ...copyRecord(r), kind: EventKind.Open, tsNs: s.tsNs, error: 0 });
    } else if (s.state === TcpState.CLOSE || s.state === TcpState.TIME_WAIT) {
      // SOCK_DONE: the peer's FIN arrived (FIN_WAIT2>CLOSE after it: bytes_received grew by it)
      if (s.oldstate === TcpState.FIN_WAIT2 && hadStats && (s.flags & EventFlag.Stats) !== 0 && s.bytesReceived > prevReceived) {
        r.flags |= EventFlag.PeerFin;
      }
      out.push({ ...copyRecord(r), kind: EventKind.Close, tsNs: s.tsNs, error: s.error });
      life.closed = true;
    }
  }
  return out;
}

function lifeOf(r: KernelEvent): number {
  if (r.nTrans === 0) return Life.Midway;
  if (r.firstOldstate === TcpState.CLOSE && r.transState[0] === TcpState.SYN_SENT) return Life.Client;
  if (r.firstOldstate === TcpState.LISTEN && r.transState[0] === TcpState.SYN_RECV) return Life.Server;
  return Life.Midway;
}

const storages = new WeakMap<Correlator, SocketStorage>();

/**
 * Feeds the kernel's records for these steps through ONE reused object, as the ring
 * reader does, and scribbles over it after each call: a correlator that kept a
 * reference would see garbage. One simulated kernel per correlator: a socket's life
 * goes on from one drive() call to the next, as it does in the kernel.
 */
export function drive(c: Correlator, steps: readonly KernelStep[]): void {
  let storage = storages.get(c);
  if (storage === undefined) {
    storage = new Map();
    storages.set(c, storage);
  }
  feed(c, simulateKernel(steps, storage));
}

/** Feeds records through one reused, scribbled-over object (see drive). */
export function feed(c: Correlator, records: readonly KernelEvent[]): void {
  const scratch = newKernelEvent();
  for (const e of records) {
    Object.assign(scratch, e, { transNs: scratch.transNs, transState: scratch.transState });
    for (let i = 0; i < e.transNs.length; i++) { scratch.transNs[i] = e.transNs[i]!; scratch.transState[i] = e.transState[i]!; }
    c.onEvent(scratch);
    for (const k of Object.keys(scratch) as (keyof KernelEvent)[]) {
      if (k === 'comm') scratch.comm = 'scribbled';
      else if (k === 'payload') scratch.payload = new Uint8Array(4).fill(0xad); // the ring's bytes are gone after the call
      else if (k === 'transNs' || k === 'transState') scratch[k].fill(0xdead);
      else scratch[k] = 0xdead;
    }
  }
}
