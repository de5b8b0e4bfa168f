// Checkpoints of long-lived connection ends (correlator.checkpointMs): while an end is open,
// every interval its life is read from the kernel's map (capture/lives-reader.ts) and what
// happened since the previous checkpoint becomes one CheckpointRecord (span-data.ts makes it a
// `tcp.connection.checkpoint` span, a child of the end's `tcp.connection` span).
//
// Totals and deltas. The kernel keeps the end's counters current in its life (tcp_probe, per
// received segment). A checkpoint's totals are those counters read the same way the final
// record reads them (close-rules.ts: payload bytes without SYN and FIN), never below the previous
// checkpoint's; its interval is totals minus the previous totals. So the intervals of an end's
// checkpoints add up to its last checkpoint's totals, and the final span's totals exceed those by
// what happened after the last checkpoint (ConnectionRecord.checkpointed holds them).
import { EventFlag, type KernelEvent } from '../decode/event.js';
import { payloadReceived, payloadSent, transitionFacts } from './close-rules.js';
import { ackedCountsSyn, NO_RARE, F_HAS_ISN, F_HAS_PID, lifeBegin, UNKNOWN, type Conn } from './conn.js';
import type { EndIdentity } from './connection-record.js';
import { CONNECTION_KINDS, endIdentity, recordTuple } from './emit-record.js';
import { connectionState } from './span-events.js';
import { randomTraceIdentity } from './trace-id.js';

/** What an end did, counted the way its final span counts it. */
export interface CheckpointCounts {
  /** payload bytes sent and acknowledged */
  bytesSent: number;
  /** payload bytes received in order */
  bytesReceived: number;
  segmentsSent: number;
  segmentsReceived: number;
  /** segments retransmitted (the kernel's count, SYN-ACK retransmits included) */
  retransmits: number;
  /** smoothed-RTT samples on the receive path, and their sum (µs) */
  rttSamples: number;
  rttSumUs: number;
}

/** One checkpoint of an open end: what it did since the previous one, and in all so far. */
export interface CheckpointRecord extends EndIdentity {
  /** 1 for the end's first checkpoint */
  sequence: number;
  /** CLOCK_MONOTONIC ns: the previous checkpoint, or the end's start */
  startNs: number;
  /** CLOCK_MONOTONIC ns: when the life was read */
  endNs: number;
  /** network.connection.state of the end when read */
  state: string;
  interval: CheckpointCounts;
  totals: CheckpointCounts;
  /** the kernel's smoothed RTT as of the last segment received, µs */
  srttUs: number | undefined;
  handshakeNs: number | undefined;
  /** the end's trace: its final span's trace id */
  traceId: string;
  /** this checkpoint's own span id (random) */
  spanId: string;
  /** the end's `tcp.connection` span, whose child a checkpoint is */
  parentSpanId: string;
  pid: number | undefined;
  executableName: string | undefined;
  cgroupId: number | undefined;
  /** filled by the attribution stage, as on the final record */
  containerId: string | undefined;
  podUid: string | undefined;
}

/** An end's checkpoints so far (Conn.checkpoint). */
export interface CheckpointState {
  /** checkpoints made */
  count: number;
  /** CLOCK_MONOTONIC ns of the last one */
  atNs: number;
  totals: CheckpointCounts;
}

export const ZERO_COUNTS: Readonly<CheckpointCounts> = Object.freeze({
  bytesSent: 0, bytesReceived: 0, segmentsSent: 0, segmentsReceived: 0, retransmits: 0, rttSamples: 0, rttSumUs: 0,
});

/**
 * The end's totals from its life as read from the map now (decode/event.ts decodeLife), never
 * below `floor` (an earlier checkpoint's): the kernel's counters only grow within a life, but
 * the receive path's reading adds the ACK being processed, which the kernel may yet refuse.
 */
export function lifeTotals(c: Conn, life: KernelEvent, floor: Readonly<CheckpointCounts>): CheckpointCounts {
  const kept = Math.min(life.nTrans, life.transState.length);
  const facts = transitionFacts(life.firstOldstate, life.transState, kept, 0, false);
  return {
    bytesSent: Math.max(floor.bytesSent, payloadSent(life.bytesAcked, ackedCountsSyn(c), facts)),
    bytesReceived: Math.max(floor.bytesReceived, payloadReceived(life.bytesReceived, facts)),
    segmentsSent: Math.max(floor.segmentsSent, life.segsOut),
    segmentsReceived: Math.max(floor.segmentsReceived, life.segsIn),
    retransmits: Math.max(floor.retransmits, Math.max(life.retransSegs, (c.rare ?? NO_RARE).evRetransSegs) + (c.rare ?? NO_RARE).synAckRetrans),
    rttSamples: Math.max(floor.rttSamples, life.rttCount),
    rttSumUs: Math.max(floor.rttSumUs, life.rttSumUs),
  };
}

export function countsDelta(now: Readonly<CheckpointCounts>, before: Readonly<CheckpointCounts>): CheckpointCounts {
  return {
    bytesSent: now.bytesSent - before.bytesSent,
    bytesReceived: now.bytesReceived - before.bytesReceived,
    segmentsSent: now.segmentsSent - before.segmentsSent,
    segmentsReceived: now.segmentsReceived - before.segmentsReceived,
    retransmits: now.retransmits - before.retransmits,
    rttSamples: now.rttSamples - before.rttSamples,
    rttSumUs: now.rttSumUs - before.rttSumUs,
  };
}

/**
 * The next checkpoint of open end `c`, from its life as read from the kernel's map at nowNs, and
 * noted on `c` (Conn.checkpoint); undefined when that life is not this end's (the socket lives
 * again: a new connect) or the end has no trace id to share yet (not established).
 */
export function checkpointOf(c: Conn, life: KernelEvent, nowNs: number): CheckpointRecord | undefined {
  if (c.lifeBeginNs !== 0 && lifeBegin(life) !== c.lifeBeginNs) return undefined;
  // a known end gets its ids from the ISNs at ESTABLISHED: random ones now would split its trace
  if (c.kind !== UNKNOWN && (c.flags & F_HAS_ISN) === 0) return undefined;
  const prev = c.checkpoint;
  const before = prev?.totals ?? ZERO_COUNTS;
  const totals = lifeTotals(c, life, before);
  const startNs = prev?.atNs ?? c.startNs;
  const count = (prev?.count ?? 0) + 1;
  c.checkpoint = { count, atNs: nowNs, totals };
  const end = endIdentity(c, true);
  // a server end learns its process (accept) in the kernel's life before any record says so
  const hasPid = (c.flags & F_HAS_PID) !== 0, lifePid = (life.flags & EventFlag.Pid) !== 0;
  const comm = hasPid ? c.comm : lifePid ? life.comm : '';
  return {
    cookie: c.cookie,
    kind: CONNECTION_KINDS[c.kind]!,
    ...recordTuple(c),
    sequence: count,
    startNs,
    endNs: Math.max(nowNs, startNs),
    state: connectionState(life.state),
    interval: countsDelta(totals, before),
    totals,
    srttUs: (life.flags & EventFlag.Stats) !== 0 && life.srttUs > 0 ? life.srttUs : undefined,
    handshakeNs: c.kind !== UNKNOWN && c.estNs > 0 ? c.estNs - c.startNs : undefined,
    traceId: end.traceId,
    spanId: randomTraceIdentity().spanId,
    parentSpanId: end.spanId,
    pid: hasPid ? c.pid : lifePid ? life.pid : undefined,
    executableName: comm !== '' ? comm : undefined,
    cgroupId: c.cgroupId !== 0 ? c.cgroupId : life.cgroupId !== 0 ? life.cgroupId : undefined,
    containerId: undefined,
    podUid: undefined,
  };
}
