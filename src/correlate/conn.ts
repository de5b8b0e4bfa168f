// One tracked connection end while it is open or lingering: numbers only until
// emission, filled from the kernel's connection records (its life) and rare events.
import { EventFlag, EventKind, isConnRecord, Life, PortOrigin, TcpState as S, type KernelEvent } from '../decode/event.js';
import { formatAddress } from '../decode/format.js';
import { MAX_TRANSITIONS } from '../decode/wire-layout.js';
import { LifeFact } from './close-rules.js';
import { retransmitCode, socketEventCode, stateChangeCode, SYNACK_RETRANSMIT_CODE } from './span-events.js';
import type { PendingSynAck } from './pending-synacks.js';
import type { ConnInspect } from './conn-inspect.js';
import type { CheckpointState } from './checkpoint.js';

// Conn.phase
export const OPEN = 0, CLOSED = 1, DONE = 2;
// Conn.kind: which end this host holds
export const UNKNOWN = 0, CLIENT = 1, SERVER = 2;

// Conn.flags
export const F_OPEN_BEFORE_START = 1 << 0;
export const F_LOSS = 1 << 1; //          records of this connection were lost
export const F_LOSS_SUSPECT = 1 << 2; //  the ring lost records while it was open: its CLOSE may be one
export const F_EVICTED = 1 << 3;
export const F_INCOMPLETE = 1 << 4;
export const F_HAS_LIFE = 1 << 5; //      a connection record was applied
export const F_HAS_ISN = 1 << 6;
export const F_HAS_STATS = 1 << 7;
export const F_HAS_PID = 1 << 8;
export const F_PEER_FIN = 1 << 9; //      the kernel saw the peer's FIN at the end (SOCK_DONE)
export const F_CONNECT_PORT = 1 << 10; //  first seen open, its local port picked by connect(): it sent the SYN

const NO_TRANSITIONS: readonly number[] = Object.freeze([]);

/** An end's span ids: its trace, its own span and its parent (the client end's span, for a server end). */
export interface EndIdentity {
  traceId: string;
  spanId: string;
  parentSpanId: string | undefined;
}

/**
 * What only an end with rare records (retransmits, resets, errors, SYN-ACK retransmits) needs,
 * apart so that the many ends without any do not carry it (see the memory bench).
 */
export class ConnRare {
  /** rare events kept as span events, packed (span-events.ts): [code, ts, value] each */
  events: number[] = [];
  /** rare events the span-event cap cut */
  droppedEvents = 0;
  /** the rare records' own counts */
  evRetransSegs = 0;
  evRetransFailed = 0;
  synAckRetrans = 0;
  /** the first error a socket error report gave */
  reportedError = 0;
  /** an RST sent while open: ends the connection only if the next transition is to CLOSE */
  rstSentOpenNs = -1;
}

/** An end's rare part for reading: zeros and no events when it has none. */
export const NO_RARE: Readonly<ConnRare> = Object.freeze(Object.assign(new ConnRare(), { events: Object.freeze([]) as unknown as number[] }));

/** An address's last three words, local then peer; undefined when all are zero (IPv4). */
function addressTail(e: KernelEvent): number[] | undefined {
  if ((e.laddr1 | e.laddr2 | e.laddr3 | e.raddr1 | e.raddr2 | e.raddr3) === 0) return undefined;
  return [e.laddr1 | 0, e.laddr2 | 0, e.laddr3 | 0, e.raddr1 | 0, e.raddr2 | 0, e.raddr3 | 0];
}

/** The end's local address, formatted. */
export function localAddressOf(c: Conn): string {
  const t = c.tail;
  return t === undefined ? formatAddress(c.family, c.l0 >>> 0, 0, 0, 0) : formatAddress(c.family, c.l0 >>> 0, t[0]! >>> 0, t[1]! >>> 0, t[2]! >>> 0);
}

/** The end's peer address, formatted. */
export function peerAddressOf(c: Conn): string {
  const t = c.tail;
  return t === undefined ? formatAddress(c.family, c.r0 >>> 0, 0, 0, 0) : formatAddress(c.family, c.r0 >>> 0, t[3]! >>> 0, t[4]! >>> 0, t[5]! >>> 0);
}

function rareOf(c: Conn): ConnRare {
  return (c.rare ??= new ConnRare());
}

/**
 * 32-bit values (netns, address words, ISNs) are kept as int32 (`| 0`, read back with
 * `>>> 0`): V8 keeps those as small integers in the object, where a value >= 2^31
 * would take a heap box.
 */
export class Conn {
  readonly cookie: number;
  netns: number;
  family: number;
  // addresses as the kernel's four 32-bit words, formatted once at emission: the first word of
  // each here, the other three (IPv6) in `tail` as [l1, l2, l3, r1, r2, r3], undefined when all
  // six are zero (IPv4), so that an IPv4 end carries no room for them
  l0: number;
  r0: number;
  tail: number[] | undefined;
  lport: number;
  rport: number;
  kind = UNKNOWN;
  phase = OPEN;
  /** closed, waiting out the linger */
  lingering = false;
  flags = 0;
  /** LifeFact bits from rare events (resets) */
  facts = 0;
  /** when the kernel's life of this end began (its identity: a different one is a new life; see lifeBegin) */
  lifeBeginNs = 0;
  startNs: number;
  estNs = 0;
  endNs = 0;
  lastTsNs: number;
  closeError = 0;
  isnLocal = 0;
  isnPeer = 0;
  /** the kernel's counts (connection records) */
  retransSegs = 0;
  retransFailed = 0;
  rttCount = 0;
  rttMinUs = 0;
  rttMaxUs = 0;
  rttSumUs = 0;
  srttUs = 0;
  bytesAcked = 0;
  bytesReceived = 0;
  segsIn = 0;
  segsOut = 0;
  pid = 0;
  comm = '';
  /** the socket's cgroup v2 id; 0: unknown */
  cgroupId = 0;
  /** first state left, then [code, ts, 0] per transition (span-events.ts) */
  firstFrom = 0;
  trans: readonly number[] = NO_TRANSITIONS;
  /** transitions the kernel saw but did not keep */
  transNotKept = 0;
  /** what its rare records brought (retransmits, resets, errors); undefined before the first (most ends) */
  rare: ConnRare | undefined = undefined;
  /** links and protocol from payload records (inspect.*); undefined without any */
  inspect: ConnInspect | undefined = undefined;
  /** when the correlator began tracking it (CLOCK_MONOTONIC ns of that record) */
  trackedNs = 0;
  /** the next checkpoint is due (correlator.checkpointMs); 0: none planned */
  checkpointDueNs = 0;
  /** checkpoints made so far; undefined before the first */
  checkpoint: CheckpointState | undefined = undefined;
  /** ids fixed before emission because a checkpoint needed them (random ones): the final span keeps them */
  ids: EndIdentity | undefined = undefined;

  constructor(e: KernelEvent) {
    this.cookie = e.cookie;
    this.netns = e.netns | 0;
    this.family = e.family;
    this.l0 = e.laddr0 | 0;
    this.r0 = e.raddr0 | 0;
    this.tail = addressTail(e);
    this.lport = e.lport;
    this.rport = e.rport;
    this.lastTsNs = e.tsNs;
    if (isConnRecord(e.kind)) {
      this.startNs = e.startNs;
      return;
    }
    // a rare event first: the kernel says what the socket's life is (its start comes with the life's record)
    this.lifeBeginNs = e.lifeStartNs;
    this.startNs = e.lifeStartNs > 0 ? e.lifeStartNs : e.tsNs;
    if (e.life === Life.Client) this.kind = CLIENT;
    else if (e.life === Life.Server) this.kind = SERVER;
    else this.flags |= F_OPEN_BEFORE_START;
  }

  /** The state the latest transition left. */
  lastFrom(): number {
    const n = this.trans.length / 3;
    if (n <= 1) return this.firstFrom;
    return (this.trans[this.trans.length - 6]! >> 3) & 0x1f;
  }
}

/**
 * When a connection record's life began, as rare events report it (life_start_ns): its first
 * transition, or for a life first seen mid-connection, that first sight. Unlike start_ns,
 * which a server's life moves to the SYN at ESTABLISHED, it never changes.
 */
export function lifeBegin(e: KernelEvent): number {
  return lifeKind(e) === UNKNOWN ? e.startNs : e.transNs[0]!;
}

/** The kind of end a life is, from its first transition. */
function lifeKind(e: KernelEvent): number {
  if (e.nTrans === 0) return UNKNOWN;
  const first = e.transState[0]!;
  if (e.firstOldstate === S.CLOSE && first === S.SYN_SENT) return CLIENT;
  if (e.firstOldstate === S.LISTEN && first === S.SYN_RECV) return SERVER;
  return UNKNOWN;
}

/**
 * Whether the end's bytes_acked counts its SYN (acked by the SYN-ACK): a client end that reached
 * ESTABLISHED, or an end first seen open whose local port connect() picked (an active opener).
 */
export function ackedCountsSyn(c: Conn): boolean {
  return c.kind === CLIENT ? c.estNs > 0 : (c.flags & F_CONNECT_PORT) !== 0;
}

/** Takes a connection record (Open or Close): the life so far replaces what was known of it. */
export function applyLife(c: Conn, e: KernelEvent): void {
  if (e.lport !== 0 && e.rport !== 0) {
    c.lport = e.lport; c.rport = e.rport; c.family = e.family; c.netns = e.netns | 0;
    c.l0 = e.laddr0 | 0;
    c.r0 = e.raddr0 | 0;
    c.tail = addressTail(e);
  }
  const first = (c.flags & F_HAS_LIFE) === 0;
  c.flags |= F_HAS_LIFE;
  if (first) {
    c.flags &= ~F_OPEN_BEFORE_START;
    c.kind = lifeKind(e);
    c.lifeBeginNs = lifeBegin(e);
    // a rare event may have come first: for a known start the kernel's is exact, else the first sight wins
    if (c.kind === UNKNOWN) {
      c.startNs = Math.min(c.startNs, e.startNs);
      c.flags |= F_OPEN_BEFORE_START;
      if (e.portOrigin === PortOrigin.Connect) c.flags |= F_CONNECT_PORT;
    } else {
      c.startNs = e.startNs;
    }
  }
  const f = e.flags;
  if ((f & EventFlag.Lost) !== 0) c.flags |= F_LOSS;
  if ((c.flags & F_HAS_PID) === 0 && (f & EventFlag.Pid) !== 0) {
    c.flags |= F_HAS_PID;
    c.pid = e.pid;
    c.comm = e.comm;
  }
  if (e.cgroupId !== 0) c.cgroupId = e.cgroupId;
  if ((f & EventFlag.Isn) !== 0 && (c.flags & F_HAS_ISN) === 0) {
    c.flags |= F_HAS_ISN;
    c.isnLocal = e.isnLocal | 0;
    c.isnPeer = e.isnPeer | 0;
  }
  if ((f & EventFlag.Stats) !== 0) {
    c.flags |= F_HAS_STATS;
    c.bytesAcked = e.bytesAcked;
    c.bytesReceived = e.bytesReceived;
    c.segsIn = e.segsIn;
    c.segsOut = e.segsOut;
    c.srttUs = e.srttUs;
  }
  if ((f & EventFlag.PeerFin) !== 0) c.flags |= F_PEER_FIN;
  if (e.rttCount > 0) {
    c.rttCount = e.rttCount;
    c.rttMinUs = e.rttMinUs;
    c.rttMaxUs = e.rttMaxUs;
    c.rttSumUs = e.rttSumUs;
  }
  c.retransSegs = e.retransSegs;
  c.retransFailed = e.retransFailed;
  c.lastTsNs = e.tsNs;

  const kept = Math.min(e.nTrans, MAX_TRANSITIONS);
  const trans = new Array<number>(3 * kept);
  for (let i = 0; i < kept; i++) {
    trans[3 * i] = stateChangeCode(e.transState[i]!);
    trans[3 * i + 1] = e.transNs[i]!;
    trans[3 * i + 2] = 0;
    if (e.transState[i] === S.ESTABLISHED && c.estNs === 0) c.estNs = e.transNs[i]!;
  }
  c.firstFrom = e.firstOldstate;
  c.trans = trans;
  c.transNotKept = e.nTrans - kept;
  if (c.rare !== undefined && c.rare.rstSentOpenNs >= 0) resolveRstSent(c, c.rare);

  if (e.kind === EventKind.Close) {
    c.phase = CLOSED;
    c.endNs = e.tsNs;
    c.closeError = e.error;
  }
}

/** An RST sent while open ends the connection when the next transition after it is to CLOSE. */
function resolveRstSent(c: Conn, rare: ConnRare): void {
  const t = c.trans;
  for (let i = 0; i < t.length; i += 3) {
    if (t[i + 1]! < rare.rstSentOpenNs) continue;
    if (((t[i]! >> 3) & 0x1f) === S.CLOSE) c.facts |= LifeFact.RstSentTerminal;
    rare.rstSentOpenNs = -1;
    return;
  }
}

/** Takes a rare event; false when the span-event cap cut it (span-events.ts chooses at emission). */
export function applyRare(c: Conn, e: KernelEvent, maxEvents: number): boolean {
  c.lastTsNs = e.tsNs;
  const rare = rareOf(c);
  switch (e.kind) {
    case EventKind.Retransmit: {
      if (e.error !== 0) rare.evRetransFailed++;
      else rare.evRetransSegs += e.segs;
      return record(rare, retransmitCode(e.state, e.tcpFlags, e.error), e.tsNs, e.segs, maxEvents);
    }
    case EventKind.ResetReceived:
      // a closed socket no longer takes segments: only an RST while open ends it
      if (c.phase === OPEN) c.facts |= e.state === S.SYN_SENT ? LifeFact.RstReceived | LifeFact.RstReceivedSynSent : LifeFact.RstReceived;
      return record(rare, socketEventCode(e.kind, e.state), e.tsNs, 0, maxEvents);
    case EventKind.ResetSent:
      // the timewait socket's RSTs come after an orderly close and do not change it
      if (e.state !== S.TIME_WAIT) {
        if (c.phase === CLOSED || e.state === S.CLOSE) c.facts |= LifeFact.RstSentTerminal;
        else rare.rstSentOpenNs = e.tsNs;
      }
      return record(rare, socketEventCode(e.kind, e.state), e.tsNs, 0, maxEvents);
    default: // EventKind.Error
      if (rare.reportedError === 0) rare.reportedError = e.error;
      return record(rare, socketEventCode(e.kind, e.state), e.tsNs, e.error, maxEvents);
  }
}

/**
 * SYN-ACK retransmits of this server end's tuple, from before its socket existed: they
 * go before the end's own rare events, which the time order of span events relies on.
 */
export function attachSynAcks(c: Conn, p: PendingSynAck, maxEvents: number): number {
  const rare = rareOf(c);
  rare.synAckRetrans += p.count;
  const own = rare.events;
  rare.events = [];
  let cut = 0;
  for (const t of p.times) {
    if (t < c.startNs) c.startNs = t; // the SYN's arrival was not recorded
    if (!record(rare, SYNACK_RETRANSMIT_CODE, t, 1, maxEvents)) cut++;
  }
  // retransmits beyond the stored times were cut like any other span event
  for (let i = p.times.length; i < p.count; i++) {
    if (!record(rare, SYNACK_RETRANSMIT_CODE, p.lastNs, 1, maxEvents)) cut++;
  }
  // the end's own events keep their place after them, within the cap
  for (let i = 0; i < own.length; i += 3) {
    if (!record(rare, own[i]!, own[i + 1]!, own[i + 2]!, maxEvents)) cut++;
  }
  return cut;
}

/** Keeps a span event unless over the cap; false when cut (counted on the connection). */
function record(rare: ConnRare, code: number, tsNs: number, value: number, maxEvents: number): boolean {
  if (rare.events.length >= 3 * maxEvents) {
    rare.droppedEvents++;
    return false;
  }
  rare.events.push(code, tsNs, value);
  return true;
}

/**
 * An open end's counters as the kernel holds them now (its life read from the map at
 * shutdown): the last record's are as old as its ESTABLISHED. Only the counters move; a life
 * of another socket at the same cookie is not this end's and changes nothing.
 */
export function refreshCounters(c: Conn, life: KernelEvent): void {
  if (c.lifeBeginNs !== 0 && lifeBegin(life) !== c.lifeBeginNs) return;
  if ((life.flags & EventFlag.Stats) !== 0) {
    c.flags |= F_HAS_STATS;
    c.bytesAcked = Math.max(c.bytesAcked, life.bytesAcked);
    c.bytesReceived = Math.max(c.bytesReceived, life.bytesReceived);
    c.segsIn = Math.max(c.segsIn, life.segsIn);
    c.segsOut = Math.max(c.segsOut, life.segsOut);
    if (life.srttUs > 0) c.srttUs = life.srttUs;
  }
  if (life.rttCount > c.rttCount) {
    c.rttCount = life.rttCount;
    c.rttMinUs = life.rttMinUs;
    c.rttMaxUs = life.rttMaxUs;
    c.rttSumUs = life.rttSumUs;
  }
  c.retransSegs = Math.max(c.retransSegs, life.retransSegs);
  c.retransFailed = Math.max(c.retransFailed, life.retransFailed);
}
