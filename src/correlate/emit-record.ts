// A tracked connection end, finished, as the ConnectionRecord the export stage takes.
import { AF_INET } from '../decode/event.js';
import {
  closeInitiator, closeReason, LifeFact, payloadReceived, payloadSent, transitionFacts,
} from './close-rules.js';
import {
  ackedCountsSyn, CLIENT, localAddressOf, NO_RARE, peerAddressOf, F_EVICTED, F_HAS_ISN, F_HAS_PID, F_HAS_STATS, F_INCOMPLETE, F_LOSS, F_LOSS_SUSPECT,
  F_OPEN_BEFORE_START, F_PEER_FIN, UNKNOWN, type Conn, type EndIdentity,
} from './conn.js';
import type { ConnectionKind, ConnectionRecord } from './connection-record.js';
import { errnoName } from './errno.js';
import { unpackEvents } from './span-events.js';
import { protocolOf } from './conn-inspect.js';
import { randomTraceIdentity, traceIdentityFromIsn } from './trace-id.js';

/** ConnectionKind by Conn.kind */
export const CONNECTION_KINDS: readonly ConnectionKind[] = ['unknown', 'client', 'server'];
const cut = [0];

/**
 * The end's span ids: from its ISNs when it was seen established (both ends compute the same,
 * trace-id.ts), else random. Random ones are made once and kept on the end, so checkpoints made
 * while it is open (checkpoint.ts) and its final span share them.
 */
export function endIdentity(c: Conn, keep = false): EndIdentity {
  if (c.ids !== undefined) return c.ids;
  if (c.kind !== UNKNOWN && (c.flags & F_HAS_ISN) !== 0) {
    const client = c.kind === CLIENT;
    const local = c.isnLocal >>> 0, peer = c.isnPeer >>> 0;
    const id = traceIdentityFromIsn(client ? local : peer, client ? peer : local);
    return { traceId: id.traceId, spanId: client ? id.clientSpanId : id.serverSpanId, parentSpanId: client ? undefined : id.clientSpanId };
  }
  const id = randomTraceIdentity();
  const ids: EndIdentity = { traceId: id.traceId, spanId: id.spanId, parentSpanId: undefined };
  if (keep) c.ids = ids; // a checkpoint asks first: later ones and the final span use these
  return ids;
}

/** The end's addresses as its records carry them. */
export function recordTuple(c: Conn): Pick<ConnectionRecord, 'family' | 'localAddress' | 'localPort' | 'peerAddress' | 'peerPort' | 'netns'> {
  return {
    family: c.family === AF_INET ? 'ipv4' : 'ipv6',
    localAddress: localAddressOf(c),
    localPort: c.lport,
    peerAddress: peerAddressOf(c),
    peerPort: c.rport,
    netns: c.netns >>> 0,
  };
}

/** The record of a finished connection end; at most `maxEvents` span events. */
export function toRecord(c: Conn, maxEvents: number): ConnectionRecord {
  const f = c.flags;
  const states: number[] = [];
  for (let i = 0; i < c.trans.length; i += 3) states.push((c.trans[i]! >> 3) & 0x1f);
  const facts = c.facts | ((f & F_INCOMPLETE) !== 0 ? LifeFact.Incomplete : 0) |
    transitionFacts(c.firstFrom, states, states.length, c.closeError, (f & F_PEER_FIN) !== 0);
  const reason = closeReason(facts, c.closeError);
  const rare = c.rare ?? NO_RARE;
  const errno = c.closeError !== 0 ? c.closeError : rare.reportedError;
  const hasStats = (f & F_HAS_STATS) !== 0;
  const known = c.kind !== UNKNOWN;
  // an end that never closed while records were being lost: its CLOSE may be one of them
  const lost = (f & F_LOSS) !== 0 || ((f & F_INCOMPLETE) !== 0 && (f & F_LOSS_SUSPECT) !== 0);

  const { traceId, spanId, parentSpanId } = endIdentity(c);
  const events = unpackEvents(rare.events, c.trans, maxEvents, cut);

  // recordTuple()'s fields written out rather than spread: one literal keeps the record's shape fast
  const rec: ConnectionRecord = {
    cookie: c.cookie,
    kind: CONNECTION_KINDS[c.kind]!,
    family: c.family === AF_INET ? 'ipv4' : 'ipv6',
    localAddress: localAddressOf(c),
    localPort: c.lport,
    peerAddress: peerAddressOf(c),
    peerPort: c.rport,
    netns: c.netns >>> 0,
    startNs: c.startNs,
    endNs: c.endNs,
    handshakeNs: known && c.estNs > 0 ? c.estNs - c.startNs : undefined,
    closeReason: reason,
    closeInitiator: closeInitiator(facts, reason, c.closeError),
    errno,
    errorName: errno !== 0 ? errnoName(errno) : undefined,
    retransmits: Math.max(c.retransSegs, rare.evRetransSegs) + rare.synAckRetrans,
    retransmitsFailed: Math.max(c.retransFailed, rare.evRetransFailed),
    rtt: c.rttCount > 0
      ? { samples: c.rttCount, minUs: c.rttMinUs, avgUs: c.rttSumUs / c.rttCount, maxUs: c.rttMaxUs }
      : undefined,
    srttUs: hasStats && c.srttUs > 0 ? c.srttUs : undefined,
    bytesSent: hasStats ? payloadSent(c.bytesAcked, ackedCountsSyn(c), facts) : undefined,
    bytesReceived: hasStats ? payloadReceived(c.bytesReceived, facts) : undefined,
    segmentsSent: hasStats ? c.segsOut : undefined,
    segmentsReceived: hasStats ? c.segsIn : undefined,
    pid: (f & F_HAS_PID) !== 0 ? c.pid : undefined,
    executableName: (f & F_HAS_PID) !== 0 && c.comm !== '' ? c.comm : undefined,
    cgroupId: c.cgroupId !== 0 ? c.cgroupId : undefined,
    containerId: undefined,
    podUid: undefined,
    openBeforeStart: (f & F_OPEN_BEFORE_START) !== 0,
    kernelEventsLost: lost,
    evicted: (f & F_EVICTED) !== 0,
    traceId,
    spanId,
    parentSpanId,
    events,
    droppedEvents: rare.droppedEvents + c.transNotKept + cut[0]!,
  };
  if (c.checkpoint !== undefined) rec.checkpointed = { count: c.checkpoint.count, ...c.checkpoint.totals };
  const x = c.inspect;
  if (x !== undefined) {
    if (x.links.length > 0 || x.droppedLinks > 0) {
      rec.links = x.links;
      rec.droppedLinks = x.droppedLinks;
    }
    const protocol = protocolOf(x);
    if (protocol !== undefined) rec.protocol = protocol;
  }
  return rec;
}
