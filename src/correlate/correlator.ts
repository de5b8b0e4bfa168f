// Turns the kernel's per-socket events into one record per connection end.
//
// Keyed by socket cookie, so a reused 4-tuple never merges two connections.
//
// Start. A client starts at CLOSE>SYN_SENT, a server at LISTEN>SYN_RECV, dated by the
//   SYN's arrival (synNs; fallback the SYN_RECV time, or an earlier SYN-ACK retransmit).
//   A connection whose first event is anything else was open before tcpspan started
//   (openBeforeStart), or, once the kernel has reported lost events, may have lost its
//   start (kernelEventsLost). Its kind is 'unknown' and it starts at its first event.
// End. The CLOSE transition, or TIME_WAIT if the kernel ever reports it for the full
//   socket (Linux 6.18 does not: FIN_WAIT2>CLOSE and CLOSING>CLOSE hand over to the
//   timewait socket). A closed connection lingers for lingerMs before it is emitted,
//   because the kernel reports some of its events after CLOSE: an abortive close's
//   RST, the error report.
// Close reason, first match wins (errno: sk_err at the CLOSE transition):
//   refused         ECONNREFUSED, or an RST received in SYN_SENT
//   reset_received  an RST received while open, or ECONNRESET / EPIPE (RST in CLOSE_WAIT)
//   timeout         ETIMEDOUT: SYN, data or keepalive retransmissions exhausted
//   reset_sent      an RST sent by this socket at its close: the RST comes with state CLOSE
//                   (SO_LINGER 0, close with unread data; the CLOSE itself carries error 0)
//                   or right before the CLOSE (tcp_abort). RSTs of the timewait socket and
//                   RSTs sent while the connection went on do not end it.
//   fin             orderly: CLOSE from FIN_WAIT2, CLOSING, LAST_ACK (or TIME_WAIT), error 0
//   aborted         anything else: a connect given up (SYN_SENT>CLOSE, error 0), another errno
//   incomplete      still open at shutdown, at eviction, or its CLOSE was lost
// Close initiator: the side whose FIN came first (FIN_WAIT1/FIN_WAIT2 seen: local;
//   CLOSE_WAIT/LAST_ACK: peer; CLOSING: both at once, so undefined). Without a FIN:
//   refused and reset_received: peer; reset_sent and timeout: local; aborted: local
//   with error 0, undefined with an errno (the network said so); incomplete: undefined.
// Bytes. tcp_sock's bytes_acked and bytes_received count sequence space, so SYN and FIN
//   are in them. Sent = bytes_acked - 1 for the client's SYN (acked by the SYN-ACK; the
//   server's child socket starts past its SYN-ACK) - 1 once this end's FIN is acked
//   (FIN_WAIT2 seen, or CLOSING/LAST_ACK left without error). Received = bytes_received
//   - 1 once the peer's FIN arrived (CLOSE_WAIT, CLOSING, LAST_ACK seen; FIN_WAIT2>TIME_WAIT;
//   FIN_WAIT2>CLOSE when bytes_received grew since the previous reading: an orphaned
//   socket hands over to timewait at the ACK of its FIN, before the peer's FIN). The SYN
//   of an 'unknown' connection is not subtracted (its kind is not known): off by one.
// Retransmits: segments of retransmits the kernel sent and counted (error 0) plus SYN-ACK
//   retransmits; attempts that failed (error != 0, e.g. -EBUSY) are counted apart.
// Memory. maxConnections bounds open plus lingering connections. At the bound, the
//   connection that closed first is emitted without waiting out its linger; if none is
//   lingering, the oldest open connection is emitted as incomplete and evicted. SYN-ACK
//   retransmits (cookie 0: the server socket does not exist yet) wait, at most
//   maxPendingSynAcks tuples, up to SYNACK_PENDING_TTL_NS after the latest one for the
//   server end of their tuple. Span events are capped at maxEventsPerSpan; the last
//   min(LIFECYCLE_RESERVE, half the cap) slots are kept for state changes, resets and
//   errors, so a connection with thousands of retransmits still shows how it ended.
//   An open connection costs about 500 bytes of heap plus 24 per span event (measured
//   on Node 24 with 100k connections); emitted cookies are remembered, 8 bytes plus a
//   Set entry each, for max(1024, maxConnections) connections.
import { constants as osConstants } from 'node:os';
import { ATTR_ERROR_TYPE } from '@opentelemetry/semantic-conventions';
import { AF_INET, AF_INET6, EventFlag, EventKind, STATE_NAMES, TcpState, type KernelEvent } from '../decode/event.js';
import { formatAddress } from '../decode/format.js';
import type { CloseInitiator, CloseReason, ConnectionEvent, ConnectionKind, ConnectionRecord } from './connection-record.js';
import * as sc from './semconv.js';
import { randomTraceIdentity, traceIdentityFromIsn } from './trace-id.js';

export interface CorrelatorOptions {
  /** open plus lingering connections kept at most */
  maxConnections: number;
  /** span events kept per connection; the rest are counted in droppedEvents */
  maxEventsPerSpan: number;
  /** how long a closed connection waits for its trailing events */
  lingerMs: number;
  /** distinct tuples of SYN-ACK retransmits waiting for their server socket */
  maxPendingSynAcks: number;
}

/** Why an event (or, for synack_*, a SYN-ACK retransmit) was not attached to a record. */
export type DropReason =
  | 'listening_socket' // a listener's state change: listeners are not connections
  | 'no_socket' //        cookie 0: an RST sent for a packet no socket wanted
  | 'closed_socket' //    an event of a socket already closed that no connection tracks
  | 'late' //             an event for a connection already emitted (after its linger, evicted)
  | 'duplicate' //        the same event twice in a row
  | 'unknown_kind' //     a record kind this version does not know
  | 'event_cap' //        a span event over maxEventsPerSpan (the record counts it too)
  | 'synack_unmatched' // a SYN-ACK retransmit whose server socket never appeared (expired, or at flush)
  | 'synack_overflow' //  a SYN-ACK retransmit pushed out of the full pending map
  | 'sink_error' //       the sink threw: that record is lost
  | 'internal_error'; //  a bug: the event was dropped rather than thrown to the caller

export const DROP_REASONS: readonly DropReason[] = [
  'listening_socket', 'no_socket', 'closed_socket', 'late', 'duplicate', 'unknown_kind', 'event_cap',
  'synack_unmatched', 'synack_overflow', 'sink_error', 'internal_error',
];

export interface CorrelatorStats {
  /** connections not yet closed */
  openConnections: number;
  /** closed, waiting out lingerMs */
  lingeringConnections: number;
  /** tuples with SYN-ACK retransmits waiting for their server socket */
  pendingSynAcks: number;
  /** records handed to the sink, evicted ones included */
  emitted: number;
  /** open connections emitted early to bound memory */
  evicted: number;
  dropped: Record<DropReason, number>;
}

export interface Correlator {
  /** Never throws. Copies what it keeps: the caller reuses `e` for the next record. */
  onEvent(e: KernelEvent): void;
  /** Emits the closed connections whose CLOSE is older than lingerMs; expires SYN-ACK retransmits. */
  tick(nowMonoNs: number): void;
  /**
   * The kernel lost events: flags every tracked connection (lingering ones too: an RST
   * or error report after CLOSE may be what was lost), and every later one seen without
   * its start (instead of openBeforeStart: which of the two happened cannot be told).
   */
  markKernelLoss(): void;
  /** Shutdown: emits every connection, open ones as incomplete ending at nowMonoNs. Safe to call twice. */
  flush(nowMonoNs: number): void;
  stats(): CorrelatorStats;
}

/** SYN-ACK retransmits wait this long after the latest one for their tuple. */
export const SYNACK_PENDING_TTL_NS = 10e9;
/** Span-event slots kept for lifecycle events (state changes, resets, errors). */
export const LIFECYCLE_RESERVE = 8;

const { ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE } = osConstants.errno;

const S = TcpState;

// Conn.phase
const OPEN = 0, CLOSED = 1, DONE = 2;
// Conn.kind
const UNKNOWN = 0, CLIENT = 1, SERVER = 2;
const KIND_NAMES: readonly ConnectionKind[] = ['unknown', 'client', 'server'];

// Conn.flags
const F_OPEN_BEFORE_START = 1 << 0;
const F_LOSS = 1 << 1;
const F_EVICTED = 1 << 2;
const F_INCOMPLETE = 1 << 3;
const F_FIN_LOCAL = 1 << 4; //        this end's FIN came first
const F_FIN_PEER = 1 << 5; //         the peer's FIN came first
const F_FIN_SIMULTANEOUS = 1 << 6; // CLOSING: both FINs crossed
const F_LOCAL_FIN_ACKED = 1 << 7;
const F_PEER_FIN = 1 << 8;
const F_RST_RX = 1 << 9;
const F_RST_RX_SYN_SENT = 1 << 10;
const F_RST_TX_PENDING = 1 << 11; //  sent while open: ends it only if CLOSE comes next
const F_RST_TX_TERMINAL = 1 << 12;
const F_ORDERLY_END = 1 << 13;
const F_HAS_ISN = 1 << 14;
const F_HAS_STATS = 1 << 15;
const F_HAS_PID = 1 << 16;

// Span events are kept packed, three numbers each: [code, tsNs, value], and become
// objects only at emission. code = type | state << 4 | retransmit type << 9 |
// retransmit failed << 11 | |retransmit error| << 12; value: segments or errno.
const EV_STATE = 1, EV_RETRANSMIT = 2, EV_RESET_RECEIVED = 3, EV_RESET_SENT = 4, EV_ERROR = 5;
const RT_SYN = 0, RT_SYN_ACK = 1, RT_DATA = 2, RT_FIN = 3;
const RETRANSMIT_TYPES = ['syn', 'syn_ack', 'data', 'fin'] as const;
const TCP_FIN = 0x01, TCP_SYN = 0x02, TCP_ACK = 0x10;

/**
 * One tracked connection end: numbers only until emission. 32-bit values (netns,
 * address words, ISNs) are kept as int32 (`| 0`, read back with `>>> 0`): V8 keeps
 * those as small integers in the object, where a value >= 2^31 would take a heap box.
 */
class Conn {
  readonly cookie: number;
  readonly netns: number;
  readonly family: number;
  // addresses as the kernel's four 32-bit words, formatted once at emission
  readonly l0: number; readonly l1: number; readonly l2: number; readonly l3: number;
  readonly r0: number; readonly r1: number; readonly r2: number; readonly r3: number;
  lport: number;
  rport: number;
  kind = UNKNOWN;
  phase = OPEN;
  flags = 0;
  startNs: number;
  estNs = 0;
  endNs = 0;
  lastTsNs = -1;
  lastSig = 0;
  closeError = 0;
  reportedError = 0;
  isnLocal = 0;
  isnPeer = 0;
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
  events: number[] = [];
  nEvents = 0;
  droppedEvents = 0;

  constructor(e: KernelEvent) {
    this.cookie = e.cookie;
    this.netns = e.netns | 0;
    this.family = e.family;
    this.l0 = e.laddr0 | 0; this.l1 = e.laddr1 | 0; this.l2 = e.laddr2 | 0; this.l3 = e.laddr3 | 0;
    this.r0 = e.raddr0 | 0; this.r1 = e.raddr1 | 0; this.r2 = e.raddr2 | 0; this.r3 = e.raddr3 | 0;
    this.lport = e.lport;
    this.rport = e.rport;
    this.startNs = e.tsNs;
  }
}

/** SYN-ACK retransmits of one tuple, before its server socket exists. */
interface PendingSynAck {
  lastNs: number;
  count: number;
  times: number[];
}

export function createCorrelator(opts: CorrelatorOptions, sink: (rec: ConnectionRecord) => void): Correlator {
  return new CorrelatorImpl(opts, sink);
}

class CorrelatorImpl implements Correlator {
  private readonly _maxConnections: number;
  private readonly _maxEvents: number;
  /** events at which retransmits stop being recorded */
  private readonly _retransmitRoom: number;
  private readonly _lingerNs: number;
  private readonly _maxPending: number;
  private readonly _sink: (rec: ConnectionRecord) => void;
  private readonly _conns = new Map<number, Conn>();
  /** closed connections in the order they closed; emitted ones are skipped */
  private _linger: (Conn | undefined)[] = [];
  private _lingerHead = 0;
  private _lingering = 0;
  private readonly _pending = new Map<string, PendingSynAck>();
  /** cookies emitted lately, so their trailing events count as late, not as new connections */
  private readonly _recent = new Set<number>();
  private readonly _recentRing: number[];
  private _recentAt = 0;
  private _lossSeen = false;
  private _emitted = 0;
  private _evicted = 0;
  private readonly _dropped: Record<DropReason, number>;

  constructor(opts: CorrelatorOptions, sink: (rec: ConnectionRecord) => void) {
    this._maxConnections = Math.max(1, Math.floor(opts.maxConnections));
    this._maxEvents = Math.max(0, Math.floor(opts.maxEventsPerSpan));
    this._retransmitRoom = this._maxEvents - Math.min(LIFECYCLE_RESERVE, Math.floor(this._maxEvents / 2));
    this._lingerNs = Math.max(0, opts.lingerMs) * 1e6;
    this._maxPending = Math.max(0, Math.floor(opts.maxPendingSynAcks));
    this._sink = sink;
    this._recentRing = new Array<number>(Math.max(1024, this._maxConnections)).fill(-1);
    this._dropped = Object.fromEntries(DROP_REASONS.map((r) => [r, 0])) as Record<DropReason, number>;
  }

  onEvent(e: KernelEvent): void {
    try {
      this._onEvent(e);
    } catch {
      this._dropped.internal_error++;
    }
  }

  tick(nowMonoNs: number): void {
    try {
      this._tick(nowMonoNs);
    } catch {
      this._dropped.internal_error++;
    }
  }

  markKernelLoss(): void {
    this._lossSeen = true;
    for (const c of this._conns.values()) c.flags |= F_LOSS;
  }

  flush(nowMonoNs: number): void {
    try {
      for (const c of this._conns.values()) {
        if (c.phase === OPEN) this._stop(c, nowMonoNs);
        this._finalize(c);
      }
      this._linger = [];
      this._lingerHead = 0;
      for (const p of this._pending.values()) this._dropped.synack_unmatched += p.count;
      this._pending.clear();
    } catch {
      this._dropped.internal_error++;
    }
  }

  stats(): CorrelatorStats {
    return {
      openConnections: this._conns.size - this._lingering,
      lingeringConnections: this._lingering,
      pendingSynAcks: this._pending.size,
      emitted: this._emitted,
      evicted: this._evicted,
      dropped: { ...this._dropped },
    };
  }

  private _onEvent(e: KernelEvent): void {
    const kind = e.kind;
    if (kind === EventKind.SynAckRetransmit) {
      this._pendSynAck(e);
      return;
    }
    if (!(kind >= EventKind.State && kind <= EventKind.Error)) {
      this._dropped.unknown_kind++;
      return;
    }
    if (e.cookie === 0) {
      this._dropped.no_socket++;
      return;
    }
    const isState = kind === EventKind.State;
    if (isState && (e.state === S.LISTEN || (e.oldstate === S.LISTEN && e.state === S.CLOSE))) {
      this._dropped.listening_socket++;
      return;
    }
    const isStart = isState &&
      ((e.oldstate === S.CLOSE && e.state === S.SYN_SENT) || (e.oldstate === S.LISTEN && e.state === S.SYN_RECV));
    const sig = kind | (e.oldstate << 4) | (e.state << 8);
    let c = this._conns.get(e.cookie);
    if (c !== undefined) {
      if (e.tsNs === c.lastTsNs && sig === c.lastSig) {
        this._dropped.duplicate++;
        return;
      }
      if (isStart) {
        // the same socket opens again (connect after a failed connect, or after disconnect)
        if (c.phase === OPEN) {
          c.flags |= F_LOSS; // its CLOSE never came
          this._stop(c, c.lastTsNs);
        }
        this._finalize(c);
        c = undefined;
      }
    }
    if (c === undefined) {
      if (!isStart) {
        if (this._recent.has(e.cookie)) {
          this._dropped.late++;
          return;
        }
        // a closed socket's RST or error report, with no connection to attach to
        if (!isState && (e.state === S.CLOSE || e.state === S.TIME_WAIT)) {
          this._dropped.closed_socket++;
          return;
        }
      }
      c = this._open(e, isStart);
    }
    this._apply(c, e, sig);
  }

  private _open(e: KernelEvent, isStart: boolean): Conn {
    if (this._conns.size >= this._maxConnections) this._makeRoom(e.tsNs);
    const c = new Conn(e);
    if (isStart) {
      if (e.state === S.SYN_SENT) {
        c.kind = CLIENT;
      } else {
        c.kind = SERVER;
        if (e.synNs > 0 && e.synNs <= e.tsNs) c.startNs = e.synNs;
        if (this._pending.size > 0) this._attachSynAcks(c, e);
      }
    } else {
      c.flags |= this._lossSeen ? F_LOSS : F_OPEN_BEFORE_START;
    }
    this._conns.set(c.cookie, c);
    return c;
  }

  private _apply(c: Conn, e: KernelEvent, sig: number): void {
    if (c.lport === 0) c.lport = e.lport; // SYN_SENT comes before the kernel picks the port
    if (c.rport === 0) c.rport = e.rport;
    if ((c.flags & F_HAS_PID) === 0 && (e.flags & EventFlag.Pid) !== 0) {
      c.flags |= F_HAS_PID;
      c.pid = e.pid;
      c.comm = e.comm;
    }
    if (e.rttCount > 0 && e.rttCount >= c.rttCount) {
      c.rttCount = e.rttCount;
      c.rttMinUs = e.rttMinUs;
      c.rttMaxUs = e.rttMaxUs;
      c.rttSumUs = e.rttSumUs;
    }
    const hadStats = (c.flags & F_HAS_STATS) !== 0;
    const prevReceived = c.bytesReceived;
    if ((e.flags & EventFlag.Stats) !== 0) {
      c.flags |= F_HAS_STATS;
      c.bytesAcked = e.bytesAcked;
      c.bytesReceived = e.bytesReceived;
      c.segsIn = e.segsIn;
      c.segsOut = e.segsOut;
      c.srttUs = e.srttUs;
    }
    c.lastTsNs = e.tsNs;
    c.lastSig = sig;

    switch (e.kind) {
      case EventKind.State:
        this._onState(c, e, hadStats && (e.flags & EventFlag.Stats) !== 0 && e.bytesReceived > prevReceived);
        break;
      case EventKind.Retransmit: {
        const failed = e.error !== 0;
        if (failed) c.retransFailed++;
        else c.retransSegs += e.segs;
        const code = EV_RETRANSMIT | (e.state << 4) | (retransmitType(e.tcpFlags) << 9) |
          ((failed ? 1 : 0) << 11) | ((Math.abs(e.error) & 0xff) << 12);
        this._record(c, code, e.tsNs, e.segs, true);
        break;
      }
      case EventKind.ResetReceived:
        // a closed socket no longer takes segments: only an RST while open ends it
        if (c.phase === OPEN) c.flags |= e.state === S.SYN_SENT ? F_RST_RX | F_RST_RX_SYN_SENT : F_RST_RX;
        this._record(c, EV_RESET_RECEIVED | (e.state << 4), e.tsNs, 0, false);
        break;
      case EventKind.ResetSent:
        // the timewait socket's RSTs come after an orderly close and do not change it
        if (e.state !== S.TIME_WAIT) {
          if (c.phase === CLOSED || e.state === S.CLOSE) c.flags |= F_RST_TX_TERMINAL;
          else c.flags |= F_RST_TX_PENDING;
        }
        this._record(c, EV_RESET_SENT | (e.state << 4), e.tsNs, 0, false);
        break;
      case EventKind.Error:
        if (c.reportedError === 0) c.reportedError = e.error;
        this._record(c, EV_ERROR | (e.state << 4), e.tsNs, e.error, false);
        break;
    }
  }

  private _onState(c: Conn, e: KernelEvent, receivedGrew: boolean): void {
    const from = e.oldstate, to = e.state;
    if ((c.flags & F_RST_TX_PENDING) !== 0) {
      c.flags &= ~F_RST_TX_PENDING;
      if (to === S.CLOSE) c.flags |= F_RST_TX_TERMINAL;
    }
    noteFinOrder(c, from);
    noteFinOrder(c, to);
    if (to === S.ESTABLISHED && c.estNs === 0) {
      c.estNs = e.tsNs;
      if ((e.flags & EventFlag.Isn) !== 0) {
        c.flags |= F_HAS_ISN;
        c.isnLocal = e.isnLocal | 0;
        c.isnPeer = e.isnPeer | 0;
      }
    }
    // FIN sequence space in bytes_acked / bytes_received
    if (from === S.FIN_WAIT2 || to === S.FIN_WAIT2 ||
        ((from === S.CLOSING || from === S.LAST_ACK) && (to === S.CLOSE || to === S.TIME_WAIT) && e.error === 0)) {
      c.flags |= F_LOCAL_FIN_ACKED;
    }
    if (to === S.CLOSE_WAIT || to === S.CLOSING || from === S.CLOSE_WAIT || from === S.LAST_ACK || from === S.CLOSING ||
        (from === S.FIN_WAIT2 && (to === S.TIME_WAIT || (to === S.CLOSE && e.error === 0 && receivedGrew)))) {
      c.flags |= F_PEER_FIN;
    }
    this._record(c, EV_STATE | (to << 4), e.tsNs, 0, false);

    if ((to === S.CLOSE || to === S.TIME_WAIT) && c.phase === OPEN) {
      c.endNs = e.tsNs;
      c.closeError = to === S.CLOSE ? e.error : 0;
      if (c.closeError === 0 && (to === S.TIME_WAIT || from === S.FIN_WAIT2 || from === S.CLOSING ||
          from === S.LAST_ACK || from === S.TIME_WAIT)) {
        c.flags |= F_ORDERLY_END;
      }
      c.phase = CLOSED;
      this._lingering++;
      this._linger.push(c);
    }
  }

  /** Keeps a span event, unless over the cap (retransmits leave room for lifecycle events). */
  private _record(c: Conn, code: number, tsNs: number, value: number, droppable: boolean): void {
    const n = c.nEvents;
    if (n >= this._maxEvents || (droppable && n >= this._retransmitRoom)) {
      c.droppedEvents++;
      this._dropped.event_cap++;
      return;
    }
    c.events.push(code, tsNs, value);
    c.nEvents = n + 1;
  }

  private _pendSynAck(e: KernelEvent): void {
    const key = tupleKey(e);
    let p = this._pending.get(key);
    if (p === undefined) {
      if (this._maxPending === 0) {
        this._dropped.synack_overflow++;
        return;
      }
      if (this._pending.size >= this._maxPending) {
        // the map is ordered by latest retransmit: the first entry is the stalest
        const first = this._pending.entries().next().value!;
        this._pending.delete(first[0]);
        this._dropped.synack_overflow += first[1].count;
      }
      p = { lastNs: e.tsNs, count: 0, times: [] };
    } else {
      this._pending.delete(key); // re-inserted below: keeps the order by latest retransmit
    }
    p.lastNs = e.tsNs;
    p.count += e.segs > 0 ? e.segs : 1;
    if (p.times.length < this._maxEvents) p.times.push(e.tsNs);
    this._pending.set(key, p);
  }

  private _attachSynAcks(c: Conn, e: KernelEvent): void {
    const key = tupleKey(e);
    const p = this._pending.get(key);
    if (p === undefined) return;
    this._pending.delete(key);
    c.retransSegs += p.count;
    const code = EV_RETRANSMIT | (S.SYN_RECV << 4) | (RT_SYN_ACK << 9);
    for (const t of p.times) {
      if (t < c.startNs) c.startNs = t; // the SYN's arrival was not recorded
      this._record(c, code, t, 1, true);
    }
    // retransmits beyond the stored times were cut like any other span event
    for (let i = p.times.length; i < p.count; i++) this._record(c, code, p.lastNs, 1, true);
  }

  private _tick(nowMonoNs: number): void {
    const limit = nowMonoNs - this._lingerNs;
    const q = this._linger;
    while (this._lingerHead < q.length) {
      const c = q[this._lingerHead]!;
      if (c.phase === CLOSED) {
        if (c.endNs > limit) break;
        this._finalize(c);
      }
      q[this._lingerHead++] = undefined;
    }
    if (this._lingerHead > 1024 && this._lingerHead * 2 > q.length) {
      this._linger = q.slice(this._lingerHead);
      this._lingerHead = 0;
    }
    const expired = nowMonoNs - SYNACK_PENDING_TTL_NS;
    for (const [key, p] of this._pending) {
      if (p.lastNs > expired) break;
      this._pending.delete(key);
      this._dropped.synack_unmatched += p.count;
    }
  }

  /** Makes room for one more connection. */
  private _makeRoom(nowNs: number): void {
    // a lingering connection is complete: emit the one that closed first, without its linger
    const q = this._linger;
    while (this._lingerHead < q.length) {
      const c = q[this._lingerHead]!;
      q[this._lingerHead++] = undefined;
      if (c.phase === CLOSED) {
        this._finalize(c);
        return;
      }
    }
    // otherwise every tracked connection is open: evict the oldest
    const oldest = this._conns.values().next().value;
    if (oldest === undefined) return;
    oldest.flags |= F_EVICTED;
    this._evicted++;
    this._stop(oldest, nowNs);
    this._finalize(oldest);
  }

  /** Ends an open connection where tcpspan stopped watching it. */
  private _stop(c: Conn, atNs: number): void {
    c.flags |= F_INCOMPLETE;
    c.endNs = Math.max(atNs, c.startNs);
  }

  private _finalize(c: Conn): void {
    if (c.phase === CLOSED) this._lingering--;
    c.phase = DONE;
    this._conns.delete(c.cookie);
    this._remember(c.cookie);
    const rec = toRecord(c);
    this._emitted++;
    try {
      this._sink(rec);
    } catch {
      this._dropped.sink_error++;
    }
  }

  private _remember(cookie: number): void {
    const ring = this._recentRing;
    const old = ring[this._recentAt]!;
    if (old >= 0) this._recent.delete(old);
    ring[this._recentAt] = cookie;
    this._recentAt = (this._recentAt + 1) % ring.length;
    this._recent.add(cookie);
  }
}

function noteFinOrder(c: Conn, state: number): void {
  if (state === S.CLOSING) {
    c.flags |= F_FIN_SIMULTANEOUS;
    return;
  }
  if ((c.flags & (F_FIN_LOCAL | F_FIN_PEER)) !== 0) return;
  if (state === S.FIN_WAIT1 || state === S.FIN_WAIT2) c.flags |= F_FIN_LOCAL;
  else if (state === S.CLOSE_WAIT || state === S.LAST_ACK) c.flags |= F_FIN_PEER;
}

function retransmitType(tcpFlags: number): number {
  if ((tcpFlags & TCP_SYN) !== 0) return (tcpFlags & TCP_ACK) !== 0 ? RT_SYN_ACK : RT_SYN;
  return (tcpFlags & TCP_FIN) !== 0 ? RT_FIN : RT_DATA;
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

function closeReason(c: Conn): CloseReason {
  const f = c.flags, err = c.closeError;
  if ((f & F_INCOMPLETE) !== 0) return 'incomplete';
  if (err === ECONNREFUSED || (f & F_RST_RX_SYN_SENT) !== 0) return 'refused';
  if ((f & F_RST_RX) !== 0 || err === ECONNRESET || err === EPIPE) return 'reset_received';
  if (err === ETIMEDOUT) return 'timeout';
  if ((f & F_RST_TX_TERMINAL) !== 0) return 'reset_sent';
  if ((f & F_ORDERLY_END) !== 0) return 'fin';
  return 'aborted';
}

function closeInitiator(c: Conn, reason: CloseReason): CloseInitiator | undefined {
  const f = c.flags;
  if ((f & F_FIN_SIMULTANEOUS) !== 0) return undefined;
  if ((f & F_FIN_LOCAL) !== 0) return 'local';
  if ((f & F_FIN_PEER) !== 0) return 'peer';
  switch (reason) {
    case 'refused':
    case 'reset_received':
      return 'peer';
    case 'reset_sent':
    case 'timeout':
      return 'local';
    case 'aborted':
      return c.closeError === 0 ? 'local' : undefined;
    default:
      return undefined;
  }
}

// errno names from Node's table of the platform's values; the first name wins (EAGAIN, not EWOULDBLOCK)
const ERRNO_NAMES = new Map<number, string>();
for (const [name, n] of Object.entries(osConstants.errno)) if (!ERRNO_NAMES.has(n)) ERRNO_NAMES.set(n, name);

/** ECONNREFUSED for 111 or -111; `errno N` when unknown. */
export function errnoName(errno: number): string {
  const n = Math.abs(errno);
  return ERRNO_NAMES.get(n) ?? `errno ${n}`;
}

// network.connection.state values (semantic conventions) by kernel state
const STATE_VALUES: string[] = [];
STATE_VALUES[S.ESTABLISHED] = sc.NETWORK_CONNECTION_STATE_VALUE_ESTABLISHED;
STATE_VALUES[S.SYN_SENT] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_SENT;
STATE_VALUES[S.SYN_RECV] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_RECEIVED;
STATE_VALUES[S.FIN_WAIT1] = sc.NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_1;
STATE_VALUES[S.FIN_WAIT2] = sc.NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_2;
STATE_VALUES[S.TIME_WAIT] = sc.NETWORK_CONNECTION_STATE_VALUE_TIME_WAIT;
STATE_VALUES[S.CLOSE] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSED;
STATE_VALUES[S.CLOSE_WAIT] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSE_WAIT;
STATE_VALUES[S.LAST_ACK] = sc.NETWORK_CONNECTION_STATE_VALUE_LAST_ACK;
STATE_VALUES[S.LISTEN] = sc.NETWORK_CONNECTION_STATE_VALUE_LISTEN;
STATE_VALUES[S.CLOSING] = sc.NETWORK_CONNECTION_STATE_VALUE_CLOSING;
STATE_VALUES[S.NEW_SYN_RECV] = sc.NETWORK_CONNECTION_STATE_VALUE_SYN_RECEIVED; // a request socket

/** The network.connection.state value of a kernel TCP state. */
export function connectionState(state: number): string {
  return STATE_VALUES[state] ?? (STATE_NAMES[state] ?? `state_${state}`).toLowerCase();
}

function toEvents(c: Conn): ConnectionEvent[] {
  const out: ConnectionEvent[] = new Array(c.nEvents);
  const ev = c.events;
  for (let i = 0, j = 0; i < ev.length; i += 3, j++) {
    const code = ev[i]!, timeNs = ev[i + 1]!, value = ev[i + 2]!;
    const state = connectionState((code >> 4) & 0x1f);
    switch (code & 0xf) {
      case EV_STATE:
        out[j] = { name: sc.EVENT_TCP_STATE_CHANGE, timeNs, attributes: { [sc.ATTR_NETWORK_CONNECTION_STATE]: state } };
        break;
      case EV_RETRANSMIT: {
        const failed = ((code >> 11) & 1) === 1;
        const attributes: ConnectionEvent['attributes'] = {
          [sc.ATTR_NETWORK_CONNECTION_STATE]: state,
          [sc.ATTR_TCP_RETRANSMIT_TYPE]: RETRANSMIT_TYPES[(code >> 9) & 3]!,
          [sc.ATTR_TCP_RETRANSMIT_SENT]: !failed,
          [sc.ATTR_TCP_RETRANSMIT_SEGMENTS]: value,
        };
        if (failed) attributes[sc.ATTR_TCP_RETRANSMIT_ERROR] = errnoName(code >> 12);
        out[j] = { name: sc.EVENT_TCP_RETRANSMIT, timeNs, attributes };
        break;
      }
      case EV_RESET_RECEIVED:
        out[j] = { name: sc.EVENT_TCP_RESET_RECEIVED, timeNs, attributes: { [sc.ATTR_NETWORK_CONNECTION_STATE]: state } };
        break;
      case EV_RESET_SENT:
        out[j] = { name: sc.EVENT_TCP_RESET_SENT, timeNs, attributes: { [sc.ATTR_NETWORK_CONNECTION_STATE]: state } };
        break;
      default: // EV_ERROR
        out[j] = { name: sc.EVENT_TCP_ERROR, timeNs, attributes: { [ATTR_ERROR_TYPE]: errnoName(value), [sc.ATTR_TCP_ERROR_CODE]: value } };
    }
  }
  return out;
}

function toRecord(c: Conn): ConnectionRecord {
  const reason = closeReason(c);
  const f = c.flags;
  const errno = c.closeError !== 0 ? c.closeError : c.reportedError;
  const hasStats = (f & F_HAS_STATS) !== 0;
  const synAcked = c.kind === CLIENT && c.estNs > 0 ? 1 : 0;
  const finAcked = (f & F_LOCAL_FIN_ACKED) !== 0 ? 1 : 0;
  const peerFin = (f & F_PEER_FIN) !== 0 ? 1 : 0;

  let traceId: string, spanId: string, parentSpanId: string | undefined;
  if (c.kind !== UNKNOWN && (f & F_HAS_ISN) !== 0) {
    const client = c.kind === CLIENT;
    const local = c.isnLocal >>> 0, peer = c.isnPeer >>> 0;
    const id = traceIdentityFromIsn(client ? local : peer, client ? peer : local);
    traceId = id.traceId;
    spanId = client ? id.clientSpanId : id.serverSpanId;
    parentSpanId = client ? undefined : id.clientSpanId;
  } else {
    const id = randomTraceIdentity();
    traceId = id.traceId;
    spanId = id.spanId;
  }

  return {
    cookie: c.cookie,
    kind: KIND_NAMES[c.kind]!,
    family: c.family === AF_INET ? 'ipv4' : 'ipv6',
    localAddress: formatAddress(c.family, c.l0 >>> 0, c.l1 >>> 0, c.l2 >>> 0, c.l3 >>> 0),
    localPort: c.lport,
    peerAddress: formatAddress(c.family, c.r0 >>> 0, c.r1 >>> 0, c.r2 >>> 0, c.r3 >>> 0),
    peerPort: c.rport,
    netns: c.netns >>> 0,
    startNs: c.startNs,
    endNs: c.endNs,
    handshakeNs: c.kind !== UNKNOWN && c.estNs > 0 ? c.estNs - c.startNs : undefined,
    closeReason: reason,
    closeInitiator: closeInitiator(c, reason),
    errno,
    errorName: errno !== 0 ? errnoName(errno) : undefined,
    retransmits: c.retransSegs,
    retransmitsFailed: c.retransFailed,
    rtt: c.rttCount > 0
      ? { samples: c.rttCount, minUs: c.rttMinUs, avgUs: c.rttSumUs / c.rttCount, maxUs: c.rttMaxUs }
      : undefined,
    srttUs: hasStats && c.srttUs > 0 ? c.srttUs : undefined,
    bytesSent: hasStats ? Math.max(0, c.bytesAcked - synAcked - finAcked) : undefined,
    bytesReceived: hasStats ? Math.max(0, c.bytesReceived - peerFin) : undefined,
    segmentsSent: hasStats ? c.segsOut : undefined,
    segmentsReceived: hasStats ? c.segsIn : undefined,
    pid: (f & F_HAS_PID) !== 0 ? c.pid : undefined,
    executableName: (f & F_HAS_PID) !== 0 && c.comm !== '' ? c.comm : undefined,
    openBeforeStart: (f & F_OPEN_BEFORE_START) !== 0,
    kernelEventsLost: (f & F_LOSS) !== 0,
    evicted: (f & F_EVICTED) !== 0,
    traceId,
    spanId,
    parentSpanId,
    events: toEvents(c),
    droppedEvents: c.droppedEvents,
  };
}
