// Decodes the kernel's records (bpf/tcpspan.h: tcpspan_conn, tcpspan_event) straight
// from ring-buffer memory into a reused object: no allocation per record on the hot path.
import { endianness } from 'node:os';
import { CONN_LAYOUT, EVENT_LAYOUT, LIFE_LAYOUT, MAX_TRANSITIONS, PAYLOAD_LAYOUT, PAYLOAD_MAX } from './wire-layout.js';

export { Life, MAX_TRANSITIONS, PayloadDir, PayloadWhat, PortOrigin } from './wire-layout.js';

if (endianness() !== 'LE') {
  // 64-bit fields are read as two 32-bit halves, low word first.
  throw new Error('tcpspan decodes kernel records on little-endian machines only');
}

/** Record kinds (enum tcpspan_kind). Open and Close carry a connection end's life; the rest are rare events. */
export const EventKind = {
  Open: 1,
  Close: 2,
  Retransmit: 3,
  SynAckRetransmit: 4,
  ResetReceived: 5,
  ResetSent: 6,
  Error: 7,
  /** the head of a segment's payload (inspect.*): its bytes are read while the record is handled, never kept */
  Payload: 8,
  /** cookie 0: an RST reached a listener, ending a handshake in progress (detect.*; for the scan detector) */
  HalfOpenReset: 9,
} as const;
export type EventKind = (typeof EventKind)[keyof typeof EventKind];

/** Record kind names, as `tcpspan events` prints them. */
export const RECORD_KIND_NAMES: Record<number, string> = {
  1: 'open',
  2: 'close',
  3: 'retransmit',
  4: 'synack_retransmit',
  5: 'reset_received',
  6: 'reset_sent',
  7: 'error',
  8: 'payload',
  9: 'half_open_reset',
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
  Lost: 0x10,
  SynSockops: 0x20,
  SynRtt: 0x40,
  PeerFin: 0x80,
} as const;

export const AF_INET = 2;
export const AF_INET6 = 10;

/**
 * One decoded record, either kind: the head, then the fields of its kind (the
 * others keep stale values; read only what `kind` says is there). Addresses stay
 * as four 32-bit words in memory order; see format.ts.
 */
export interface KernelEvent {
  // head
  tsNs: number;
  cookie: number;
  laddr0: number; laddr1: number; laddr2: number; laddr3: number;
  raddr0: number; raddr1: number; raddr2: number; raddr3: number;
  netns: number;
  lport: number;
  rport: number;
  family: number;
  kind: number;
  flags: number;
  state: number;
  // rare events
  /** the socket's life: its start (0 without one) and what it is known as (Life) */
  lifeStartNs: number;
  life: number;
  error: number;
  seq: number;
  segs: number;
  tcpFlags: number;
  // payload records (also lifeStartNs, life, seq)
  payloadSegLen: number;
  payloadLen: number;
  /** PayloadDir */
  payloadDir: number;
  /** PayloadWhat bits */
  payloadWhat: number;
  /**
   * The bytes copied (payloadLen), a view into the ring: valid only while the record is
   * handled. Whoever needs something of it parses it then and keeps only the result.
   */
  payload: Uint8Array;
  // connection records (Open, Close); error is sk_err at Close
  startNs: number;
  /** when each state was entered; the first min(nTrans, MAX_TRANSITIONS) are filled */
  transNs: number[];
  transState: number[];
  nTrans: number;
  firstOldstate: number;
  /** a life first seen open: how its local port was taken (PortOrigin); 0 otherwise */
  portOrigin: number;
  bytesAcked: number;
  bytesReceived: number;
  rttSumUs: number;
  rttCount: number;
  rttMinUs: number;
  rttMaxUs: number;
  srttUs: number;
  segsIn: number;
  segsOut: number;
  totalRetrans: number;
  retransSegs: number;
  retransFailed: number;
  isnLocal: number;
  isnPeer: number;
  pid: number;
  comm: string;
  /** the socket's cgroup v2 id (its directory's inode number); 0: unknown */
  cgroupId: number;
}

const EMPTY = new Uint8Array(0);

export function newKernelEvent(): KernelEvent {
  return {
    tsNs: 0, cookie: 0, laddr0: 0, laddr1: 0, laddr2: 0, laddr3: 0, raddr0: 0, raddr1: 0, raddr2: 0, raddr3: 0,
    netns: 0, lport: 0, rport: 0, family: 0, kind: 0, flags: 0, state: 0, lifeStartNs: 0, life: 0, error: 0, seq: 0, segs: 0, tcpFlags: 0,
    payloadSegLen: 0, payloadLen: 0, payloadDir: 0, payloadWhat: 0, payload: EMPTY,
    startNs: 0, transNs: new Array<number>(MAX_TRANSITIONS).fill(0), transState: new Array<number>(MAX_TRANSITIONS).fill(0),
    nTrans: 0, firstOldstate: 0, portOrigin: 0, bytesAcked: 0, bytesReceived: 0, rttSumUs: 0, rttCount: 0, rttMinUs: 0, rttMaxUs: 0,
    srttUs: 0, segsIn: 0, segsOut: 0, totalRetrans: 0, retransSegs: 0, retransFailed: 0, isnLocal: 0, isnPeer: 0,
    pid: 0, comm: '', cgroupId: 0,
  };
}

/** True for the records that carry a connection end's life. */
export function isConnRecord(kind: number): boolean {
  return kind === EventKind.Open || kind === EventKind.Close;
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

const C = CONN_LAYOUT.fields;
const E = EVENT_LAYOUT.fields;
const P = PAYLOAD_LAYOUT.fields;
type Field = { readonly offset: number };
const W = (x: Field) => x.offset >> 2; // 32-bit word index
const H = (x: Field) => x.offset >> 1; // 16-bit index
const TWO32 = 4294967296;

const wTs = W(C.ts_ns), wCookie = W(C.cookie), wLaddr = W(C.laddr), wRaddr = W(C.raddr), wNetns = W(C.netns);
const hLport = H(C.lport), hRport = H(C.rport), hFamily = H(C.family);
const bKind = C.kind.offset, bFlags = C.flags.offset, bState = C.state.offset;
const wLifeStart = W(E.life_start_ns), bLife = E.life.offset;
const wError = W(E.error), wSeq = W(E.seq), hSegs = H(E.segs), bTcpFlags = E.tcp_flags.offset;
const wStart = W(C.start_ns), wTrans = W(C.trans_ns), wAcked = W(C.bytes_acked), wRecv = W(C.bytes_received);
const wRttSum = W(C.rtt_sum_us), wRttCount = W(C.rtt_count), wRttMin = W(C.rtt_min_us), wRttMax = W(C.rtt_max_us);
const wSrtt = W(C.srtt_us), wSegsIn = W(C.segs_in), wSegsOut = W(C.segs_out), wTotalRetrans = W(C.total_retrans);
const wRetransSegs = W(C.retrans_segs), wRetransFailed = W(C.retrans_failed), wIsnL = W(C.isn_local);
const wIsnP = W(C.isn_peer), wPid = W(C.pid), wConnError = W(C.error), bTransState = C.trans_state.offset;
const wSegLen = W(P.seg_len), hLen = H(P.len), bDir = P.dir.offset, bWhat = P.what.offset, bData = P.data.offset;
const bFirstOld = C.first_oldstate.offset, bPortOrigin = C.port_origin.offset, bNTrans = C.n_trans.offset, wComm = W(C.comm), bComm = C.comm.offset;
const wCgroup = W(C.cgroup_id);

/** The 64-bit field at 32-bit word `i` (little-endian), as a Number: exact below 2^53. */
function u64(u32: Uint32Array, i: number): number {
  return u32[i]! + u32[i + 1]! * TWO32;
}

export const EVENT_SIZE = EVENT_LAYOUT.size;
export const CONN_SIZE = CONN_LAYOUT.size;
/** A payload record without its data: the least it can be. */
export const PAYLOAD_HEAD_SIZE = bData;

/** The size a record of this kind must have at least; 0 for a kind this version does not know. */
export function recordSize(kind: number): number {
  if (isConnRecord(kind)) return CONN_SIZE;
  if (kind === EventKind.Payload) return PAYLOAD_HEAD_SIZE;
  return (kind >= EventKind.Retransmit && kind <= EventKind.Error) || kind === EventKind.HalfOpenReset ? EVENT_SIZE : 0;
}

/**
 * Fills `out` from the record at byte offset `off` (8-byte aligned): the head, then
 * the fields of its kind. 64-bit counters become Numbers: exact below 2^53 (cookies,
 * byte counts); nanoseconds since boot stay exact for 104 days of uptime.
 */
export function decodeEvent(m: RecordMemory, off: number, out: KernelEvent): void {
  const u32 = m.u32, u8 = m.u8, u16 = m.u16, w = off >> 2, h = off >> 1;
  out.tsNs = u64(u32, w + wTs);
  out.cookie = u64(u32, w + wCookie);
  out.laddr0 = u32[w + wLaddr]!;
  out.laddr1 = u32[w + wLaddr + 1]!;
  out.laddr2 = u32[w + wLaddr + 2]!;
  out.laddr3 = u32[w + wLaddr + 3]!;
  out.raddr0 = u32[w + wRaddr]!;
  out.raddr1 = u32[w + wRaddr + 1]!;
  out.raddr2 = u32[w + wRaddr + 2]!;
  out.raddr3 = u32[w + wRaddr + 3]!;
  out.netns = u32[w + wNetns]!;
  out.lport = u16[h + hLport]!;
  out.rport = u16[h + hRport]!;
  out.family = u16[h + hFamily]!;
  const kind = u8[off + bKind]!;
  out.kind = kind;
  out.flags = u8[off + bFlags]!;
  out.state = u8[off + bState]!;
  if (kind === EventKind.Open || kind === EventKind.Close) {
    decodeConn(m, off, out);
    return;
  }
  out.lifeStartNs = u64(u32, w + wLifeStart);
  out.life = u8[off + bLife]!;
  if (kind === EventKind.Payload) {
    decodePayload(m, off, out);
    return;
  }
  out.error = m.i32[w + wError]!;
  out.seq = u32[w + wSeq]!;
  out.segs = u16[h + hSegs]!;
  out.tcpFlags = u8[off + bTcpFlags]!;
}

const wLifeClosed = LIFE_LAYOUT.fields.closed.offset >> 2;

/**
 * Fills `out` from a life as the kernel keeps it in the `lives` map (struct sock_info at byte
 * offset `off`), for checkpoints: the head and the connection fields, as a record of kind 0
 * (ts_ns is 0 there: the kernel stamps records, not lives). False when the life has sent its
 * Close record already (its end is closing: its Close is in the ring or handled).
 */
export function decodeLife(m: RecordMemory, off: number, out: KernelEvent): boolean {
  decodeEvent(m, off, out); // kind 0: the head alone
  decodeConn(m, off, out);
  return m.u32[(off >> 2) + wLifeClosed] === 0;
}

function decodePayload(m: RecordMemory, off: number, out: KernelEvent): void {
  const w = off >> 2;
  out.seq = m.u32[w + wSeq]!;
  out.payloadSegLen = m.u32[w + wSegLen]!;
  const len = m.u16[(off >> 1) + hLen]!;
  out.payloadLen = len < PAYLOAD_MAX ? len : PAYLOAD_MAX; // never past the record, whatever it says
  out.payloadDir = m.u8[off + bDir]!;
  out.payloadWhat = m.u8[off + bWhat]!;
  out.payload = m.u8.subarray(off + bData, off + bData + out.payloadLen);
}

function decodeConn(m: RecordMemory, off: number, out: KernelEvent): void {
  const u32 = m.u32, u8 = m.u8, w = off >> 2;
  out.startNs = u64(u32, w + wStart);
  const n = u8[off + bNTrans]!;
  out.nTrans = n;
  out.firstOldstate = u8[off + bFirstOld]!;
  out.portOrigin = u8[off + bPortOrigin]!;
  const kept = n < MAX_TRANSITIONS ? n : MAX_TRANSITIONS;
  for (let i = 0; i < kept; i++) {
    out.transNs[i] = u64(u32, w + wTrans + 2 * i);
    out.transState[i] = u8[off + bTransState + i]!;
  }
  out.bytesAcked = u64(u32, w + wAcked);
  out.bytesReceived = u64(u32, w + wRecv);
  out.rttSumUs = u64(u32, w + wRttSum);
  out.cgroupId = u64(u32, w + wCgroup);
  out.rttCount = u32[w + wRttCount]!;
  out.rttMinUs = u32[w + wRttMin]!;
  out.rttMaxUs = u32[w + wRttMax]!;
  out.srttUs = u32[w + wSrtt]!;
  out.segsIn = u32[w + wSegsIn]!;
  out.segsOut = u32[w + wSegsOut]!;
  out.totalRetrans = u32[w + wTotalRetrans]!;
  out.retransSegs = u32[w + wRetransSegs]!;
  out.retransFailed = u32[w + wRetransFailed]!;
  out.isnLocal = u32[w + wIsnL]!;
  out.isnPeer = u32[w + wIsnP]!;
  out.pid = u32[w + wPid]!;
  out.error = m.i32[w + wConnError]!;
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
