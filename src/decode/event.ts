// Decodes tcpspan_event records (bpf/tcpspan.h) straight from ring-buffer memory
// into a reused object: no allocation per event on the hot path.
import { endianness } from 'node:os';
import { EVENT_LAYOUT } from './wire-layout.js';

if (endianness() !== 'LE') {
  // 64-bit fields are read as two 32-bit halves, low word first.
  throw new Error('tcpspan decodes kernel records on little-endian machines only');
}

export const EventKind = {
  State: 1,
  Retransmit: 2,
  SynAckRetransmit: 3,
  ResetReceived: 4,
  ResetSent: 5,
  Error: 6,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

export const KIND_NAMES: Record<number, string> = {
  1: 'state',
  2: 'retransmit',
  3: 'synack_retransmit',
  4: 'reset_received',
  5: 'reset_sent',
  6: 'error',
};

/** Linux TCP states (include/net/tcp_states.h). */
export const TcpState = {
  ESTABLISHED: 1,
  SYN_SENT: 2,
  SYN_RECV: 3,
  FIN_WAIT1: 4,
  FIN_WAIT2: 5,
  TIME_WAIT: 6,
  CLOSE: 7,
  CLOSE_WAIT: 8,
  LAST_ACK: 9,
  LISTEN: 10,
  CLOSING: 11,
  NEW_SYN_RECV: 12,
} as const;

export const STATE_NAMES: readonly string[] = [
  'UNKNOWN', 'ESTABLISHED', 'SYN_SENT', 'SYN_RECV', 'FIN_WAIT1', 'FIN_WAIT2', 'TIME_WAIT', 'CLOSE',
  'CLOSE_WAIT', 'LAST_ACK', 'LISTEN', 'CLOSING', 'NEW_SYN_RECV',
];

export const EventFlag = {
  Pid: 0x01,
  Stats: 0x02,
  Isn: 0x04,
  Untracked: 0x08,
} as const;

export const AF_INET = 2;
export const AF_INET6 = 10;

/** One decoded record. Addresses stay as four 32-bit words in memory order; see format.ts. */
export interface KernelEvent {
  tsNs: number;
  cookie: number;
  synNs: number;
  bytesAcked: number;
  bytesReceived: number;
  rxBytes: number;
  rttSumUs: number;
  rttCount: number;
  rttMinUs: number;
  rttMaxUs: number;
  srttUs: number;
  rxSegs: number;
  segsIn: number;
  segsOut: number;
  totalRetrans: number;
  isnLocal: number;
  isnPeer: number;
  netns: number;
  pid: number;
  error: number;
  seq: number;
  laddr0: number; laddr1: number; laddr2: number; laddr3: number;
  raddr0: number; raddr1: number; raddr2: number; raddr3: number;
  lport: number;
  rport: number;
  family: number;
  segs: number;
  kind: number;
  oldstate: number;
  state: number;
  tcpFlags: number;
  flags: number;
  comm: string;
}

export function newKernelEvent(): KernelEvent {
  return {
    tsNs: 0, cookie: 0, synNs: 0, bytesAcked: 0, bytesReceived: 0, rxBytes: 0, rttSumUs: 0, rttCount: 0,
    rttMinUs: 0, rttMaxUs: 0, srttUs: 0, rxSegs: 0, segsIn: 0, segsOut: 0, totalRetrans: 0, isnLocal: 0,
    isnPeer: 0, netns: 0, pid: 0, error: 0, seq: 0, laddr0: 0, laddr1: 0, laddr2: 0, laddr3: 0, raddr0: 0,
    raddr1: 0, raddr2: 0, raddr3: 0, lport: 0, rport: 0, family: 0, segs: 0, kind: 0, oldstate: 0, state: 0,
    tcpFlags: 0, flags: 0, comm: '',
  };
}

/** Typed views over one memory region (the ring's data area, or a test buffer). */
export interface RecordMemory {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  readonly i32: Int32Array;
}

export function recordMemory(buffer: ArrayBuffer): RecordMemory {
  return { u8: new Uint8Array(buffer), u16: new Uint16Array(buffer), u32: new Uint32Array(buffer), i32: new Int32Array(buffer) };
}

const F = EVENT_LAYOUT.fields;
const W = (name: keyof typeof F) => F[name].offset >> 2; // 32-bit word index
const H = (name: keyof typeof F) => F[name].offset >> 1; // 16-bit index
const B = (name: keyof typeof F) => F[name].offset;
const TWO32 = 4294967296;

const wTs = W('ts_ns'), wCookie = W('cookie'), wSyn = W('syn_ns'), wAcked = W('bytes_acked');
const wRecv = W('bytes_received'), wRx = W('rx_bytes'), wRttSum = W('rtt_sum_us'), wRttCount = W('rtt_count');
const wRttMin = W('rtt_min_us'), wRttMax = W('rtt_max_us'), wSrtt = W('srtt_us'), wRxSegs = W('rx_segs');
const wSegsIn = W('segs_in'), wSegsOut = W('segs_out'), wTotalRetrans = W('total_retrans');
const wIsnL = W('isn_local'), wIsnP = W('isn_peer'), wNetns = W('netns'), wPid = W('pid'), wError = W('error');
const wSeq = W('seq'), wLaddr = W('laddr'), wRaddr = W('raddr'), wComm = W('comm');
const hLport = H('lport'), hRport = H('rport'), hFamily = H('family'), hSegs = H('segs');
const bKind = B('kind'), bOld = B('oldstate'), bState = B('state'), bTcpFlags = B('tcp_flags'), bFlags = B('flags');
const bComm = B('comm');

export const EVENT_SIZE = EVENT_LAYOUT.size;

/**
 * Fills `out` from the record at byte offset `off` (8-byte aligned). 64-bit
 * counters become Numbers: exact below 2^53 (cookies, byte counts); ts_ns
 * (nanoseconds since boot) loses sub-nanosecond precision only after 104 days up.
 */
export function decodeEvent(m: RecordMemory, off: number, out: KernelEvent): void {
  const u32 = m.u32, w = off >> 2, h = off >> 1;
  out.tsNs = u32[w + wTs]! + u32[w + wTs + 1]! * TWO32;
  out.cookie = u32[w + wCookie]! + u32[w + wCookie + 1]! * TWO32;
  out.synNs = u32[w + wSyn]! + u32[w + wSyn + 1]! * TWO32;
  out.bytesAcked = u32[w + wAcked]! + u32[w + wAcked + 1]! * TWO32;
  out.bytesReceived = u32[w + wRecv]! + u32[w + wRecv + 1]! * TWO32;
  out.rxBytes = u32[w + wRx]! + u32[w + wRx + 1]! * TWO32;
  out.rttSumUs = u32[w + wRttSum]! + u32[w + wRttSum + 1]! * TWO32;
  out.rttCount = u32[w + wRttCount]!;
  out.rttMinUs = u32[w + wRttMin]!;
  out.rttMaxUs = u32[w + wRttMax]!;
  out.srttUs = u32[w + wSrtt]!;
  out.rxSegs = u32[w + wRxSegs]!;
  out.segsIn = u32[w + wSegsIn]!;
  out.segsOut = u32[w + wSegsOut]!;
  out.totalRetrans = u32[w + wTotalRetrans]!;
  out.isnLocal = u32[w + wIsnL]!;
  out.isnPeer = u32[w + wIsnP]!;
  out.netns = u32[w + wNetns]!;
  out.pid = u32[w + wPid]!;
  out.error = m.i32[w + wError]!;
  out.seq = u32[w + wSeq]!;
  out.laddr0 = u32[w + wLaddr]!;
  out.laddr1 = u32[w + wLaddr + 1]!;
  out.laddr2 = u32[w + wLaddr + 2]!;
  out.laddr3 = u32[w + wLaddr + 3]!;
  out.raddr0 = u32[w + wRaddr]!;
  out.raddr1 = u32[w + wRaddr + 1]!;
  out.raddr2 = u32[w + wRaddr + 2]!;
  out.raddr3 = u32[w + wRaddr + 3]!;
  const u16 = m.u16;
  out.lport = u16[h + hLport]!;
  out.rport = u16[h + hRport]!;
  out.family = u16[h + hFamily]!;
  out.segs = u16[h + hSegs]!;
  const u8 = m.u8;
  out.kind = u8[off + bKind]!;
  out.oldstate = u8[off + bOld]!;
  out.state = u8[off + bState]!;
  out.tcpFlags = u8[off + bTcpFlags]!;
  out.flags = u8[off + bFlags]!;
  out.comm = (out.flags & EventFlag.Pid) !== 0 ? commOf(m, off, out.pid) : '';
}

// comm changes rarely for a pid: decode the 16 bytes to a string once per (pid, bytes).
interface CommEntry { c0: number; c1: number; c2: number; c3: number; text: string }
const commCache = new Map<number, CommEntry>();
const COMM_CACHE_MAX = 4096;

function commOf(m: RecordMemory, off: number, pid: number): string {
  const w = (off >> 2) + wComm;
  const c0 = m.u32[w]!, c1 = m.u32[w + 1]!, c2 = m.u32[w + 2]!, c3 = m.u32[w + 3]!;
  const hit = commCache.get(pid);
  if (hit && hit.c0 === c0 && hit.c1 === c1 && hit.c2 === c2 && hit.c3 === c3) return hit.text;
  let end = off + bComm;
  const limit = end + 16;
  while (end < limit && m.u8[end] !== 0) end++;
  const text = Buffer.from(m.u8.buffer, m.u8.byteOffset + off + bComm, end - off - bComm).toString('utf8');
  if (commCache.size >= COMM_CACHE_MAX) commCache.clear();
  commCache.set(pid, { c0, c1, c2, c3, text });
  return text;
}
