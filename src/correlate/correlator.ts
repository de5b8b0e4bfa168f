// Turns the kernel's records into one ConnectionRecord per connection end.
//
// The kernel keeps each end's life and sends it whole: an Open record when the end is
// established, a Close record when it ends (bpf/tcpspan.h). Rare events (retransmits,
// resets, errors) are records of their own and join their end by socket cookie, so a
// reused 4-tuple never merges two connections. What the records mean is decided in
// close-rules.ts; the span events are packed as span-events.ts says.
//
// Open ends are kept (by cookie) until their Close, so that ends still open at shutdown
// become spans too. A closed end is emitted at once after an orderly close; after any
// other close it lingers for lingerMs, because the kernel reports some events after the
// CLOSE: an abortive close's RST, the error report.
//
// Memory. maxConnections bounds open plus lingering ends. At the bound, the end that
// closed first is emitted without waiting out its linger; if none is lingering, the
// oldest open end is emitted as incomplete and evicted (its later records are counted as
// `evicted`). SYN-ACK retransmits (cookie 0: the server socket does not exist yet) wait
// in pending-synacks.ts. Span events are capped at maxEventsPerSpan; over the cap, state
// changes are kept first, then resets and errors, then retransmits (span-events.ts), so
// a connection with thousands of retransmits still shows how it ended.
//
// Checkpoints (checkpointMs > 0, checkpoint.ts). An end open longer than checkpointMs gets a
// checkpoint every checkpointMs from its start: checkpoint() finds the ends due (the oldest
// tracked come first in _conns, so the walk stops at the first end tracked less than an
// interval ago), has their lives read from the kernel's map (the caller's reader) and hands one
// CheckpointRecord per end whose life it found open to the checkpoint sink. A life not found
// (its end is closing, or the kernel keeps none) makes no checkpoint for that interval.
import { AF_INET, EventKind, isConnRecord, Life, TcpState, type KernelEvent } from '../decode/event.js';
import { mayHaveTrailingEvents } from './close-rules.js';
import {
  applyLife, applyRare, attachSynAcks, CLOSED, Conn, lifeBegin, DONE, F_EVICTED, F_HAS_LIFE, F_INCOMPLETE, F_LOSS, F_LOSS_SUSPECT, OPEN,
  refreshCounters, SERVER,
} from './conn.js';
import type { ConnectionKind, ConnectionRecord } from './connection-record.js';
import { toRecord } from './emit-record.js';
import { applyPayload } from './conn-inspect.js';
import { createPendingSynAcks, type PendingSynAcks } from './pending-synacks.js';
import { checkpointOf, type CheckpointRecord } from './checkpoint.js';
import { CONNECTION_KINDS } from './emit-record.js';

export { SYNACK_PENDING_TTL_NS } from './pending-synacks.js';

export interface CorrelatorOptions {
  /** open plus lingering connections kept at most */
  maxConnections: number;
  /** span events kept per connection; the rest are counted in droppedEvents */
  maxEventsPerSpan: number;
  /** how long an end that did not close in order waits for its trailing events */
  lingerMs: number;
  /** distinct tuples of SYN-ACK retransmits waiting for their server socket */
  maxPendingSynAcks: number;
  /** span links kept per connection end (inspect.traceparent); the rest are counted in droppedLinks. Default 32. */
  maxLinksPerSpan?: number;
  /** an open end gets a checkpoint every this many ms from its start (checkpoint()); 0 or absent: none */
  checkpointMs?: number;
}

/**
 * Reads the kernel's lives (capture/lives-reader.ts through decode/event.ts decodeLife): hands
 * `visit` the open life of each of these cookies found, decoded; the event is reused after the call.
 */
export type LifeReader = (cookies: ReadonlyMap<number, unknown>, visit: (life: KernelEvent) => void) => void;

export const DEFAULT_MAX_LINKS_PER_SPAN = 32;

/** Why a kernel record (or, for synack_*, a SYN-ACK retransmit) was not attached to a connection. */
export type EventDropReason =
  | 'no_socket' //        cookie 0: an RST sent for a packet no socket wanted
  | 'closed_socket' //    an event of a socket whose connection already ended (timewait, after CLOSE)
  | 'untracked' //        an event of a socket the kernel kept no life for (no memory: sock_map_full)
  | 'request_socket' //   an event of a request socket (a handshake in progress, before its socket exists)
  | 'evicted' //          a record of an end already emitted as evicted (incomplete)
  | 'unknown_kind' //     a record kind this version does not know
  | 'event_cap' //        a span event over maxEventsPerSpan (the record counts it too)
  | 'synack_unmatched' // a SYN-ACK retransmit whose server socket never appeared (expired, or at flush)
  | 'synack_overflow' //  a SYN-ACK retransmit pushed out of the full pending map
  | 'payload_untracked' // a payload record (inspect.*) of a socket with no tracked end
  | 'sink_error' //       the sink threw: that record is lost
  | 'internal_error'; //  a bug: the record was dropped rather than thrown to the caller

export const EVENT_DROP_REASONS: readonly EventDropReason[] = [
  'no_socket', 'closed_socket', 'untracked', 'request_socket', 'evicted', 'unknown_kind', 'event_cap', 'synack_unmatched', 'synack_overflow',
  'payload_untracked', 'sink_error', 'internal_error',
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
  /** open ends ended because the kernel no longer held them after a loss: their Close was lost */
  closesLost: number;
  dropped: Record<EventDropReason, number>;
}

export interface Correlator {
  /** Never throws. Copies what it keeps: the caller reuses `e` for the next record. */
  onEvent(e: KernelEvent): void;
  /** Emits the closed connections whose CLOSE is older than lingerMs; expires SYN-ACK retransmits. */
  tick(nowMonoNs: number): void;
  /**
   * The kernel lost records: every end open now may have lost its Close. One that is
   * still open at shutdown or eviction is then flagged kernelEventsLost.
   */
  markKernelLoss(): void;
  /**
   * After a loss: ends the open ends suspected since (markKernelLoss) that the kernel no longer
   * holds (`stillOpen` false: their socket is gone, and the Close record with it), as incomplete
   * at nowMonoNs with kernelEventsLost. Call it after draining what the ring held when the
   * kernel was asked. Returns how many it ended.
   */
  endLostCloses(stillOpen: (cookie: number) => boolean, nowMonoNs: number): number;
  /** Shutdown: emits every connection, open ones as incomplete ending at nowMonoNs. Safe to call twice. */
  flush(nowMonoNs: number): void;
  /** Before flush: the open ends' counters as the kernel holds them now (their last record's are older). */
  refreshOpen(read: LifeReader): void;
  /**
   * Makes the checkpoints due at nowMonoNs (checkpointMs), reading the ends' lives with `read`,
   * and hands them to the checkpoint sink. Returns how many it made. Never throws.
   */
  checkpoint(nowMonoNs: number, read: LifeReader): number;
  /** Visits every open end: its kind, family and start (CLOCK_MONOTONIC ns). */
  openEnds(visit: (kind: ConnectionKind, family: 'ipv4' | 'ipv6', startNs: number) => void): void;
  stats(): CorrelatorStats;
}

export function createCorrelator(opts: CorrelatorOptions, sink: (rec: ConnectionRecord) => void,
                                 checkpointSink?: (cp: CheckpointRecord) => void): Correlator {
  return new CorrelatorImpl(opts, sink, checkpointSink);
}

class CorrelatorImpl implements Correlator {
  private readonly _maxConnections: number;
  private readonly _maxEvents: number;
  private readonly _maxLinks: number;
  private readonly _lingerNs: number;
  private readonly _sink: (rec: ConnectionRecord) => void;
  /** open and lingering ends, oldest first */
  private readonly _conns = new Map<number, Conn>();
  /** closed ends in the order they closed; emitted ones are skipped */
  private _linger: (Conn | undefined)[] = [];
  private _lingerHead = 0;
  private _lingering = 0;
  private readonly _pending: PendingSynAcks;
  /** ends evicted lately (cookie to life start): their later records are counted, not taken as new ends */
  private readonly _evictedLives = new Map<number, number>();
  private readonly _evictedRing: number[];
  private _evictedAt = 0;
  private _emitted = 0;
  private _evicted = 0;
  private _closesLost = 0;
  private readonly _dropped: Record<EventDropReason, number>;
  private readonly _checkpointNs: number;
  private readonly _checkpointSink: ((cp: CheckpointRecord) => void) | undefined;
  /** the ends due in the current checkpoint round, by cookie (reused) */
  private readonly _due = new Map<number, Conn>();

  constructor(opts: CorrelatorOptions, sink: (rec: ConnectionRecord) => void, checkpointSink?: (cp: CheckpointRecord) => void) {
    this._maxConnections = Math.max(1, Math.floor(opts.maxConnections));
    this._maxEvents = Math.max(0, Math.floor(opts.maxEventsPerSpan));
    this._maxLinks = Math.max(0, Math.floor(opts.maxLinksPerSpan ?? DEFAULT_MAX_LINKS_PER_SPAN));
    this._lingerNs = Math.max(0, opts.lingerMs) * 1e6;
    this._pending = createPendingSynAcks(opts.maxPendingSynAcks, this._maxEvents);
    this._sink = sink;
    this._evictedRing = new Array<number>(Math.max(1024, Math.min(this._maxConnections, 65536))).fill(-1);
    this._dropped = Object.fromEntries(EVENT_DROP_REASONS.map((r) => [r, 0])) as Record<EventDropReason, number>;
    this._checkpointNs = checkpointSink !== undefined ? Math.max(0, opts.checkpointMs ?? 0) * 1e6 : 0;
    this._checkpointSink = checkpointSink;
  }

  checkpoint(nowMonoNs: number, read: LifeReader): number {
    const interval = this._checkpointNs;
    if (interval <= 0) return 0;
    const due = this._due;
    let made = 0;
    try {
      // the oldest tracked first: stop at the first end tracked less than an interval ago
      const limit = nowMonoNs - interval;
      for (const c of this._conns.values()) {
        if (c.trackedNs > limit) break;
        if (c.phase === OPEN && c.checkpointDueNs <= nowMonoNs) due.set(c.cookie, c);
      }
      if (due.size === 0) return 0;
      read(due, (life) => {
        const c = due.get(life.cookie);
        const cp = c !== undefined ? checkpointOf(c, life, nowMonoNs) : undefined;
        if (cp === undefined) return;
        made++;
        try {
          this._checkpointSink!(cp);
        } catch {
          this._dropped.sink_error++;
        }
      });
      // the next one an interval later, also for the ends whose life was not found
      for (const c of due.values()) {
        while (c.checkpointDueNs <= nowMonoNs) c.checkpointDueNs += interval;
      }
    } catch {
      this._dropped.internal_error++;
    } finally {
      due.clear();
    }
    return made;
  }

  openEnds(visit: (kind: ConnectionKind, family: 'ipv4' | 'ipv6', startNs: number) => void): void {
    for (const c of this._conns.values()) {
      if (c.phase === OPEN) visit(CONNECTION_KINDS[c.kind]!, c.family === AF_INET ? 'ipv4' : 'ipv6', c.startNs);
    }
  }

  onEvent(e: KernelEvent): void {
    try {
      if (isConnRecord(e.kind)) this._onLife(e);
      else if (e.kind === EventKind.SynAckRetransmit) this._dropped.synack_overflow += this._pending.add(e);
      else if (e.kind >= EventKind.Retransmit && e.kind <= EventKind.Error) this._onRare(e);
      else if (e.kind === EventKind.Payload) this._onPayload(e);
      else if (e.kind === EventKind.HalfOpenReset) return; // no connection end: the detectors' (src/detect/)
      else this._dropped.unknown_kind++;
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
    for (const c of this._conns.values()) if (c.phase === OPEN) c.flags |= F_LOSS_SUSPECT;
  }

  endLostCloses(stillOpen: (cookie: number) => boolean, nowMonoNs: number): number {
    let n = 0;
    try {
      for (const c of this._conns.values()) { // a Map's iteration survives deleting what it has visited
        if (c.phase !== OPEN || (c.flags & F_LOSS_SUSPECT) === 0 || stillOpen(c.cookie)) continue;
        this._rememberEvicted(c); // a record of it arriving after all is counted, never a second span
        this._stop(c, nowMonoNs);
        this._finalize(c);
        n++;
      }
    } catch {
      this._dropped.internal_error++;
    }
    this._closesLost += n;
    return n;
  }

  refreshOpen(read: LifeReader): void {
    try {
      const open = new Map<number, Conn>();
      for (const c of this._conns.values()) if (c.phase === OPEN) open.set(c.cookie, c);
      if (open.size === 0) return;
      read(open, (life) => {
        const c = open.get(life.cookie);
        if (c !== undefined) refreshCounters(c, life);
      });
    } catch {
      this._dropped.internal_error++;
    }
  }

  flush(nowMonoNs: number): void {
    try {
      for (const c of this._conns.values()) {
        if (c.phase === OPEN) this._stop(c, nowMonoNs);
        this._finalize(c);
      }
      this._linger = [];
      this._lingerHead = 0;
      this._dropped.synack_unmatched += this._pending.clear();
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
      closesLost: this._closesLost,
      dropped: { ...this._dropped },
    };
  }

  /** An Open or Close record: the end's life so far. */
  private _onLife(e: KernelEvent): void {
    let c = this._conns.get(e.cookie);
    const begin = lifeBegin(e);
    if (c === undefined && this._evictedLives.size > 0 && this._wasEvicted(e.cookie, begin)) return;
    if (c !== undefined && c.lifeBeginNs !== 0 && c.lifeBeginNs !== begin) {
      this._endPreviousLife(c);
      c = undefined;
    }
    const tracked = c !== undefined;
    if (c === undefined) c = new Conn(e);
    const hadLife = (c.flags & F_HAS_LIFE) !== 0;
    applyLife(c, e);
    if (!hadLife && c.kind === SERVER) this._attachSynAcks(c, e);

    if (e.kind === EventKind.Open) {
      if (!tracked) this._track(c, e.tsNs);
      return;
    }
    if (!mayHaveTrailingEvents(c.lastFrom(), c.closeError)) {
      this._finalize(c); // an orderly close: nothing more will come
      return;
    }
    if (!tracked) this._track(c, e.tsNs);
    c.lingering = true;
    this._lingering++;
    this._linger.push(c);
  }

  private _onRare(e: KernelEvent): void {
    let c = this._conns.get(e.cookie);
    if (c !== undefined && e.life !== Life.None && c.lifeBeginNs !== 0 && c.lifeBeginNs !== e.lifeStartNs) {
      this._endPreviousLife(c);
      c = undefined;
    }
    if (c === undefined) {
      if (e.cookie === 0) {
        this._dropped.no_socket++;
        return;
      }
      if (e.life === Life.None) {
        // no life in the kernel: its connection ended (timewait, a trailing event), a request socket, or no memory
        if (e.state === TcpState.CLOSE || e.state === TcpState.TIME_WAIT) this._dropped.closed_socket++;
        else if (e.state === TcpState.NEW_SYN_RECV) this._dropped.request_socket++;
        else this._dropped.untracked++;
        return;
      }
      if (this._evictedLives.size > 0 && this._wasEvicted(e.cookie, e.lifeStartNs)) return;
      c = new Conn(e);
      this._track(c, e.tsNs);
    }
    if (!applyRare(c, e, this._maxEvents)) this._dropped.event_cap++;
  }

  /** A payload record (inspect.*): parsed now, while its bytes are in the ring; only the results are kept. */
  private _onPayload(e: KernelEvent): void {
    let c = this._conns.get(e.cookie);
    if (c !== undefined && c.lifeBeginNs !== 0 && c.lifeBeginNs !== e.lifeStartNs) {
      this._endPreviousLife(c);
      c = undefined;
    }
    if (c === undefined) {
      // the kernel sends these only for sockets with a life, so this is rare: counted
      if (e.cookie === 0 || e.life === Life.None) {
        this._dropped.payload_untracked++;
        return;
      }
      if (this._evictedLives.size > 0 && this._wasEvicted(e.cookie, e.lifeStartNs)) return;
      c = new Conn(e); // an end open before tcpspan started, known so far only by its life
      this._track(c, e.tsNs);
    }
    applyPayload(c, e, this._maxLinks);
  }

  /**
   * The same socket lives again (connect after a failed connect, or after disconnect):
   * a lingering previous life is complete; an open one never got its Close.
   */
  private _endPreviousLife(c: Conn): void {
    if (c.phase === OPEN) {
      c.flags |= F_LOSS;
      this._stop(c, c.lastTsNs);
    }
    this._finalize(c);
  }

  /** A record of an end emitted as evicted: counted, so the end is not emitted twice. */
  private _wasEvicted(cookie: number, lifeBeginNs: number): boolean {
    const life = this._evictedLives.get(cookie);
    if (life === undefined || life !== lifeBeginNs) return false; // not evicted, or a later life of that socket
    this._dropped.evicted++;
    return true;
  }

  private _rememberEvicted(c: Conn): void {
    const ring = this._evictedRing;
    const old = ring[this._evictedAt]!;
    if (old >= 0) this._evictedLives.delete(old);
    ring[this._evictedAt] = c.cookie;
    this._evictedAt = (this._evictedAt + 1) % ring.length;
    this._evictedLives.set(c.cookie, c.lifeBeginNs);
  }

  private _attachSynAcks(c: Conn, e: KernelEvent): void {
    const p = this._pending.take(e);
    if (p !== undefined) this._dropped.event_cap += attachSynAcks(c, p, this._maxEvents);
  }

  private _track(c: Conn, nowNs: number): void {
    if (this._conns.size >= this._maxConnections) this._makeRoom(nowNs);
    c.trackedNs = nowNs;
    if (this._checkpointNs > 0) c.checkpointDueNs = c.startNs + this._checkpointNs;
    this._conns.set(c.cookie, c);
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
    if (this._pending.size > 0) this._dropped.synack_unmatched += this._pending.expire(nowMonoNs);
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
    this._rememberEvicted(oldest);
    this._stop(oldest, nowNs);
    this._finalize(oldest);
  }

  /** Ends an open connection where tcpspan stopped watching it. */
  private _stop(c: Conn, atNs: number): void {
    c.flags |= F_INCOMPLETE;
    c.endNs = Math.max(atNs, c.startNs);
  }

  private _finalize(c: Conn): void {
    if (c.phase === DONE) return;
    if (this._conns.get(c.cookie) === c) this._conns.delete(c.cookie);
    if (c.lingering) {
      c.lingering = false;
      this._lingering--;
    }
    c.phase = DONE;
    const rec = toRecord(c, this._maxEvents);
    this._dropped.event_cap += rec.droppedEvents - (c.rare?.droppedEvents ?? 0); // cut at emission, or not kept by the kernel
    this._emitted++;
    try {
      this._sink(rec);
    } catch {
      this._dropped.sink_error++;
    }
  }
}
