// Unit: the correlator driven with kernel event sequences (as test/capture.test.ts
// shows the real kernel producing them); each test compares whole records or spans.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as incubating from '@opentelemetry/semantic-conventions/incubating';
import { EventFlag, EventKind, PortOrigin, TcpState as S, newKernelEvent, type KernelEvent } from '../src/decode/event.js';
import type { KernelStep } from './support/event-builder.js';
import {
  createCorrelator, EVENT_DROP_REASONS, SYNACK_PENDING_TTL_NS, type CorrelatorOptions, type CorrelatorStats, type EventDropReason,
} from '../src/correlate/correlator.js';
import type { ConnectionEvent, ConnectionRecord } from '../src/correlate/connection-record.js';
import { randomTraceIdentity, traceIdentityFromIsn } from '../src/correlate/trace-id.js';
import { epochOffset, toCheckpointSpanData, toHrTime, toSpanData, type SpanData } from '../src/correlate/span-data.js';
import type { CheckpointRecord } from '../src/correlate/checkpoint.js';
import * as sc from '../src/correlate/semconv.js';
import { Endpoint, NETNS, StepKind, T0, addressWords, drive, feed, isn, ms, pid, rtt, simulateKernel, stats, us, type SocketStorage } from './support/event-builder.js';

const OPTS: CorrelatorOptions = { maxConnections: 100, maxEventsPerSpan: 32, lingerMs: 100, maxPendingSynAcks: 16 };
const LINGER_NS = 100e6;

function setup(opts: Partial<CorrelatorOptions> = {}) {
  const out: ConnectionRecord[] = [];
  const c = createCorrelator({ ...OPTS, ...opts }, (r) => out.push(r));
  return { c, out };
}

/** Drives the events, then lets every linger run out. */
function run(events: readonly KernelStep[], opts: Partial<CorrelatorOptions> = {}) {
  const { c, out } = setup(opts);
  drive(c, events);
  c.tick(Math.max(...events.map((e) => e.tsNs)) + LINGER_NS);
  return { c, out };
}

function drops(d: Partial<Record<EventDropReason, number>> = {}): Record<EventDropReason, number> {
  return { ...(Object.fromEntries(EVENT_DROP_REASONS.map((r) => [r, 0])) as Record<EventDropReason, number>), ...d };
}

function idle(emitted: number, d: Partial<Record<EventDropReason, number>> = {}, evicted = 0): CorrelatorStats {
  return { openConnections: 0, lingeringConnections: 0, pendingSynAcks: 0, emitted, evicted, closesLost: 0, dropped: drops(d) };
}

// ---- expected span events ----
const st = (timeNs: number, state: string): ConnectionEvent =>
  ({ name: 'tcp.state_change', timeNs, attributes: { 'network.connection.state': state } });
const retx = (timeNs: number, state: string, type: string, segments: number, error?: string): ConnectionEvent => ({
  name: 'tcp.retransmit', timeNs,
  attributes: {
    'network.connection.state': state, 'tcp.retransmit.type': type, 'tcp.retransmit.sent': error === undefined,
    'tcp.retransmit.segments': segments, ...(error !== undefined ? { 'tcp.retransmit.error': error } : {}),
  },
});
const rstRx = (timeNs: number, state: string): ConnectionEvent =>
  ({ name: 'tcp.reset_received', timeNs, attributes: { 'network.connection.state': state } });
const rstTx = (timeNs: number, state: string): ConnectionEvent =>
  ({ name: 'tcp.reset_sent', timeNs, attributes: { 'network.connection.state': state } });
const err = (timeNs: number, name: string, code: number): ConnectionEvent =>
  ({ name: 'tcp.error', timeNs, attributes: { 'error.type': name, 'tcp.error.code': code } });

/** The ids as trace-id.ts documents them, computed here independently. */
function ids(clientIsn: number, serverIsn: number) {
  const isns = Buffer.alloc(8);
  isns.writeUInt32BE(clientIsn, 0);
  isns.writeUInt32BE(serverIsn, 4);
  const d = createHash('sha256').update('tcpspan/trace/v1').update(isns).digest('hex');
  return { traceId: d.slice(0, 32), clientSpanId: d.slice(32, 48), serverSpanId: d.slice(48, 64) };
}

const RANDOM = '(random)';
/** Checks random ids are well formed, then blanks them so the rest compares whole. */
function randomIds(r: ConnectionRecord): ConnectionRecord {
  assert.match(r.traceId, /^[0-9a-f]{32}$/);
  assert.match(r.spanId, /^[0-9a-f]{16}$/);
  assert.notEqual(r.traceId, '0'.repeat(32));
  assert.notEqual(r.spanId, '0'.repeat(16));
  return { ...r, traceId: RANDOM, spanId: RANDOM };
}

type Given = Pick<ConnectionRecord,
  'cookie' | 'kind' | 'localAddress' | 'localPort' | 'peerAddress' | 'peerPort' | 'startNs' | 'endNs' | 'handshakeNs' |
  'closeReason' | 'closeInitiator' | 'rtt' | 'srttUs' | 'bytesSent' | 'bytesReceived' | 'segmentsSent' | 'segmentsReceived' |
  'traceId' | 'spanId' | 'events'> & Partial<ConnectionRecord>;

/** A whole expected record: the fields every test states, plus the quiet defaults. */
function record(g: Given): ConnectionRecord {
  return {
    family: 'ipv4', netns: NETNS, errno: 0, errorName: undefined, retransmits: 0, retransmitsFailed: 0, pid: undefined,
    executableName: undefined, cgroupId: undefined, containerId: undefined, podUid: undefined, openBeforeStart: false,
    kernelEventsLost: false, evicted: false, parentSpanId: undefined, droppedEvents: 0, ...g,
  };
}

// ---- one loopback-like connection, both ends (ISNs crosswise, as the kernel reports them) ----
const CLIENT_ISN = 0x11111111, SERVER_ISN = 0xdeadbeef;
const IDS = ids(CLIENT_ISN, SERVER_ISN);
const CLIENT = new Endpoint({ cookie: 101, local: '10.0.0.1', lport: 40000, peer: '10.0.0.2', rport: 80 });
const SERVER = new Endpoint({ cookie: 202, local: '10.0.0.2', lport: 80, peer: '10.0.0.1', rport: 40000 });
const curl = pid(1234, 'curl');

const activeClose = [
  CLIENT.state(us(0), S.CLOSE, S.SYN_SENT, curl, stats(0, 0, 0, 0, 0)),
  CLIENT.state(us(500), S.SYN_SENT, S.ESTABLISHED, curl, isn(CLIENT_ISN, SERVER_ISN), stats(1, 0, 1, 1, 500), rtt(1, 500, 500, 500)),
  CLIENT.state(us(3000), S.ESTABLISHED, S.FIN_WAIT1, curl, stats(101, 300, 3, 3, 450), rtt(2, 400, 500, 900)),
  CLIENT.state(us(3100), S.FIN_WAIT1, S.FIN_WAIT2, curl, stats(102, 300, 4, 4, 450), rtt(3, 400, 500, 1350)),
  CLIENT.state(us(3250), S.FIN_WAIT2, S.CLOSE, curl, stats(102, 301, 5, 5, 450), rtt(4, 400, 500, 1800)),
];
const activeCloseRecord = record({
  cookie: 101, kind: 'client', localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80,
  startNs: us(0), endNs: us(3250), handshakeNs: 500_000, closeReason: 'fin', closeInitiator: 'local',
  rtt: { samples: 4, minUs: 400, avgUs: 450, maxUs: 500 }, srttUs: 450,
  // bytes_acked 102 = SYN + 100 + FIN; bytes_received 301 = 300 + FIN
  bytesSent: 100, bytesReceived: 300, segmentsSent: 5, segmentsReceived: 5, pid: 1234, executableName: 'curl',
  traceId: IDS.traceId, spanId: IDS.clientSpanId,
  events: [st(us(0), 'syn_sent'), st(us(500), 'established'), st(us(3000), 'fin_wait_1'), st(us(3100), 'fin_wait_2'), st(us(3250), 'closed')],
});

const syn = { synNs: us(200) }; // the SYN reached the listener
const nginx = pid(999, 'nginx');
const passiveClose = [
  SERVER.state(us(600), S.LISTEN, S.SYN_RECV, syn, stats(0, 0, 0, 0, 0)),
  SERVER.state(us(601), S.SYN_RECV, S.ESTABLISHED, syn, isn(SERVER_ISN, CLIENT_ISN), stats(0, 0, 1, 1, 400)),
  SERVER.state(us(3050), S.ESTABLISHED, S.CLOSE_WAIT, syn, stats(300, 101, 4, 3, 400), rtt(2, 380, 420, 800)),
  SERVER.state(us(3200), S.CLOSE_WAIT, S.LAST_ACK, syn, nginx, stats(300, 101, 4, 4, 400), rtt(2, 380, 420, 800)),
  SERVER.state(us(3300), S.LAST_ACK, S.CLOSE, syn, nginx, stats(301, 101, 5, 4, 410), rtt(3, 380, 420, 1200)),
];
const passiveCloseRecord = record({
  cookie: 202, kind: 'server', localAddress: '10.0.0.2', localPort: 80, peerAddress: '10.0.0.1', peerPort: 40000,
  startNs: us(200), endNs: us(3300), handshakeNs: 401_000, closeReason: 'fin', closeInitiator: 'peer',
  rtt: { samples: 3, minUs: 380, avgUs: 400, maxUs: 420 }, srttUs: 410,
  // the server's bytes_acked has no SYN (its socket starts past the SYN-ACK): 301 = 300 + FIN
  bytesSent: 300, bytesReceived: 100, segmentsSent: 4, segmentsReceived: 5, pid: 999, executableName: 'nginx',
  traceId: IDS.traceId, spanId: IDS.serverSpanId, parentSpanId: IDS.clientSpanId,
  events: [st(us(600), 'syn_received'), st(us(601), 'established'), st(us(3050), 'close_wait'), st(us(3200), 'last_ack'), st(us(3300), 'closed')],
});

describe('Correlator', () => {
  describe('active close', () => {
    it('should emit one client record at its orderly close, without linger, with bytes net of SYN and FIN', () => {
      const { c, out } = setup();
      drive(c, activeClose.slice(0, -1));
      assert.deepEqual(out, []);
      assert.deepEqual(c.stats(), { ...idle(0), openConnections: 1 });
      drive(c, activeClose.slice(-1));
      assert.deepEqual(out, [activeCloseRecord]);
      assert.deepEqual(c.stats(), idle(1));
      c.tick(us(3250) + LINGER_NS);
      assert.deepEqual(out, [activeCloseRecord]);
      assert.deepEqual(c.stats(), idle(1));
    });
  });

  describe('passive close', () => {
    it('should start the server end at the SYN arrival and name the peer as initiator', () => {
      const { c, out } = run(passiveClose);
      assert.deepEqual(out, [passiveCloseRecord]);
      assert.deepEqual(c.stats(), idle(1));
    });

    it('should start at the SYN_RECV transition when the SYN arrival was not recorded', () => {
      const { out } = run(passiveClose.map((e) => ({ ...e, synNs: 0 })));
      assert.deepEqual(out, [{ ...passiveCloseRecord, startNs: us(600), handshakeNs: 1_000 }]);
    });
  });

  describe('TIME_WAIT', () => {
    it('should end at TIME_WAIT when the kernel reports it, and count the FIN that caused it', () => {
      const e = new Endpoint({ cookie: 350, local: '10.0.0.5', lport: 40350, peer: '10.0.0.6', rport: 80 });
      const { out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT, stats(0, 0, 0, 0, 0)),
        e.state(us(100), S.SYN_SENT, S.ESTABLISHED, isn(350, 53), stats(1, 0, 1, 1, 100)),
        e.state(us(900), S.ESTABLISHED, S.FIN_WAIT1, stats(11, 0, 2, 3, 100)),
        e.state(us(1000), S.FIN_WAIT1, S.FIN_WAIT2, stats(12, 0, 3, 3, 100)),
        e.state(us(1500), S.FIN_WAIT2, S.TIME_WAIT, stats(12, 41, 5, 4, 100)),
        e.state(us(1501), S.TIME_WAIT, S.CLOSE, stats(12, 41, 5, 4, 100)),
      ]);
      const id = ids(350, 53);
      assert.deepEqual(out, [record({
        cookie: 350, kind: 'client', localAddress: '10.0.0.5', localPort: 40350, peerAddress: '10.0.0.6', peerPort: 80,
        startNs: us(0), endNs: us(1500), handshakeNs: 100_000, closeReason: 'fin', closeInitiator: 'local',
        rtt: undefined, srttUs: 100, bytesSent: 10, bytesReceived: 40, segmentsSent: 4, segmentsReceived: 5,
        traceId: id.traceId, spanId: id.clientSpanId,
        // the life ends at TIME_WAIT (its Close record): the kernel ignores the TIME_WAIT>CLOSE after it
        events: [st(us(0), 'syn_sent'), st(us(100), 'established'), st(us(900), 'fin_wait_1'), st(us(1000), 'fin_wait_2'),
          st(us(1500), 'time_wait')],
      })]);
    });

    it('should not count a peer FIN when an orphaned FIN_WAIT2 socket hands over to timewait', () => {
      const e = new Endpoint({ cookie: 351, local: '10.0.0.5', lport: 40351, peer: '10.0.0.6', rport: 80 });
      const { out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT, stats(0, 0, 0, 0, 0)),
        e.state(us(100), S.SYN_SENT, S.ESTABLISHED, isn(351, 153), stats(1, 0, 1, 1, 100)),
        e.state(us(900), S.ESTABLISHED, S.FIN_WAIT1, stats(11, 40, 3, 3, 100)),
        // the ACK of the FIN: FIN_WAIT2 and, for a closed (orphaned) socket, CLOSE at once
        e.state(us(1000), S.FIN_WAIT1, S.FIN_WAIT2, stats(12, 40, 4, 3, 100)),
        e.state(us(1000) + 1, S.FIN_WAIT2, S.CLOSE, stats(12, 40, 4, 3, 100)),
      ]);
      const id = ids(351, 153);
      assert.deepEqual(out, [record({
        cookie: 351, kind: 'client', localAddress: '10.0.0.5', localPort: 40351, peerAddress: '10.0.0.6', peerPort: 80,
        startNs: us(0), endNs: us(1000) + 1, handshakeNs: 100_000, closeReason: 'fin', closeInitiator: 'local',
        rtt: undefined, srttUs: 100, bytesSent: 10, bytesReceived: 40, segmentsSent: 3, segmentsReceived: 4,
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), st(us(100), 'established'), st(us(900), 'fin_wait_1'), st(us(1000), 'fin_wait_2'), st(us(1000) + 1, 'closed')],
      })]);
    });
  });

  describe('aborted', () => {
    it('should end a connect the application gave up as aborted, locally, without error', () => {
      const e = new Endpoint({ cookie: 360, local: '10.0.0.5', lport: 40360, peer: '192.0.2.1', rport: 80 });
      const { out } = run([
        e.state(ms(0), S.CLOSE, S.SYN_SENT),
        e.retransmit(ms(1000), S.SYN_SENT, 0x02, 1, 0),
        e.state(ms(1500), S.SYN_SENT, S.CLOSE),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 360, kind: 'client', localAddress: '10.0.0.5', localPort: 40360, peerAddress: '192.0.2.1', peerPort: 80,
        startNs: ms(0), endNs: ms(1500), handshakeNs: undefined, closeReason: 'aborted', closeInitiator: 'local', retransmits: 1,
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: RANDOM, spanId: RANDOM,
        events: [st(ms(0), 'syn_sent'), retx(ms(1000), 'syn_sent', 'syn', 1), st(ms(1500), 'closed')],
      })]);
    });

    it('should end an unreachable connect as aborted with its errno and no initiator', () => {
      const e = new Endpoint({ cookie: 361, local: '10.0.0.5', lport: 40361, peer: '192.0.2.1', rport: 80 });
      const { out } = run([
        e.state(ms(0), S.CLOSE, S.SYN_SENT),
        e.state(ms(3), S.SYN_SENT, S.CLOSE, { error: 113 }),
        e.error(ms(3) + 1, 113),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 361, kind: 'client', localAddress: '10.0.0.5', localPort: 40361, peerAddress: '192.0.2.1', peerPort: 80,
        startNs: ms(0), endNs: ms(3), handshakeNs: undefined, closeReason: 'aborted', closeInitiator: undefined,
        errno: 113, errorName: 'EHOSTUNREACH',
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: RANDOM, spanId: RANDOM,
        events: [st(ms(0), 'syn_sent'), st(ms(3), 'closed'), err(ms(3) + 1, 'EHOSTUNREACH', 113)],
      })]);
    });
  });

  describe('simultaneous close', () => {
    it('should end with fin and no initiator when both FINs crossed (CLOSING)', () => {
      const e = new Endpoint({ cookie: 303, local: '10.0.0.3', lport: 40003, peer: '10.0.0.4', rport: 7000 });
      const { out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT, stats(0, 0, 0, 0, 0)),
        e.state(us(100), S.SYN_SENT, S.ESTABLISHED, isn(0x30303030, 0x40404040), stats(1, 0, 1, 1, 100)),
        e.state(us(1000), S.ESTABLISHED, S.FIN_WAIT1, stats(51, 20, 3, 3, 100)),
        e.state(us(1040), S.FIN_WAIT1, S.CLOSING, stats(51, 21, 4, 4, 100)),
        e.state(us(1100), S.CLOSING, S.CLOSE, stats(52, 21, 5, 4, 100)),
      ]);
      const id = ids(0x30303030, 0x40404040);
      assert.deepEqual(out, [record({
        cookie: 303, kind: 'client', localAddress: '10.0.0.3', localPort: 40003, peerAddress: '10.0.0.4', peerPort: 7000,
        startNs: us(0), endNs: us(1100), handshakeNs: 100_000, closeReason: 'fin', closeInitiator: undefined,
        rtt: undefined, srttUs: 100, bytesSent: 50, bytesReceived: 20, segmentsSent: 4, segmentsReceived: 5,
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), st(us(100), 'established'), st(us(1000), 'fin_wait_1'), st(us(1040), 'closing'), st(us(1100), 'closed')],
      })]);
    });
  });

  describe('reset received', () => {
    it('should end with reset_received, initiated by the peer, with the error (IPv6)', () => {
      const e = new Endpoint({ cookie: 404, local: 'fd00::1', lport: 40004, peer: 'fd00::2', rport: 5432 });
      const psql = pid(11, 'psql');
      const { c, out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT, psql, stats(0, 0, 0, 0, 0)),
        e.state(us(80), S.SYN_SENT, S.ESTABLISHED, psql, isn(0x04040404, 0x05050505), stats(1, 0, 1, 1, 80), rtt(1, 80, 80, 80)),
        e.resetReceived(ms(2), S.ESTABLISHED, psql, rtt(2, 80, 90, 170)),
        e.state(ms(2) + 1000, S.ESTABLISHED, S.CLOSE, psql, stats(11, 0, 3, 3, 85), rtt(2, 80, 90, 170), { error: 104 }),
        e.error(ms(2) + 2000, 104, psql),
      ]);
      const id = ids(0x04040404, 0x05050505);
      assert.deepEqual(out, [record({
        cookie: 404, kind: 'client', family: 'ipv6', localAddress: 'fd00::1', localPort: 40004, peerAddress: 'fd00::2', peerPort: 5432,
        startNs: us(0), endNs: ms(2) + 1000, handshakeNs: 80_000, closeReason: 'reset_received', closeInitiator: 'peer',
        errno: 104, errorName: 'ECONNRESET', rtt: { samples: 2, minUs: 80, avgUs: 85, maxUs: 90 }, srttUs: 85,
        bytesSent: 10, bytesReceived: 0, segmentsSent: 3, segmentsReceived: 3, pid: 11, executableName: 'psql',
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), st(us(80), 'established'), rstRx(ms(2), 'established'), st(ms(2) + 1000, 'closed'), err(ms(2) + 2000, 'ECONNRESET', 104)],
      })]);
      assert.deepEqual(c.stats(), idle(1));
    });
  });

  describe('reset sent', () => {
    it('should attach the RST and error that follow CLOSE while the connection lingers (SO_LINGER 0)', () => {
      const e = new Endpoint({ cookie: 505, local: '10.1.0.1', lport: 8080, peer: '10.1.0.2', rport: 45555 });
      const srv = pid(777, 'server');
      const { c, out } = setup();
      drive(c, [
        e.state(us(50), S.LISTEN, S.SYN_RECV, { synNs: us(0) }, stats(0, 0, 0, 0, 0)),
        e.state(us(51), S.SYN_RECV, S.ESTABLISHED, { synNs: us(0) }, isn(0x5e5e5e5e, 0x0c0c0c0c), stats(0, 0, 1, 1, 100)),
        // the abortive close: CLOSE first (error 0), then the RST, then ECONNRESET on this socket
        e.state(ms(5), S.ESTABLISHED, S.CLOSE, srv, stats(0, 10, 2, 1, 100), rtt(1, 100, 100, 100)),
      ]);
      // not an orderly close: it lingers lingerMs for what the kernel reports after the CLOSE
      c.tick(ms(5) + LINGER_NS / 2);
      assert.deepEqual(out, []);
      assert.deepEqual(c.stats(), { ...idle(0), lingeringConnections: 1 });
      drive(c, [e.resetSent(ms(5) + 2000, S.CLOSE, srv, rtt(1, 100, 100, 100)), e.error(ms(5) + 3000, 104, srv)]);
      c.tick(ms(5) + LINGER_NS - 1);
      assert.deepEqual(out, []);
      c.tick(ms(5) + LINGER_NS);
      assert.deepEqual(c.stats(), idle(1));
      const id = ids(0x0c0c0c0c, 0x5e5e5e5e);
      assert.deepEqual(out, [record({
        cookie: 505, kind: 'server', localAddress: '10.1.0.1', localPort: 8080, peerAddress: '10.1.0.2', peerPort: 45555,
        startNs: us(0), endNs: ms(5), handshakeNs: 51_000, closeReason: 'reset_sent', closeInitiator: 'local',
        errno: 104, errorName: 'ECONNRESET', rtt: { samples: 1, minUs: 100, avgUs: 100, maxUs: 100 }, srttUs: 100,
        bytesSent: 0, bytesReceived: 10, segmentsSent: 1, segmentsReceived: 2, pid: 777, executableName: 'server',
        traceId: id.traceId, spanId: id.serverSpanId, parentSpanId: id.clientSpanId,
        events: [st(us(50), 'syn_received'), st(us(51), 'established'), st(ms(5), 'closed'), rstTx(ms(5) + 2000, 'closed'), err(ms(5) + 3000, 'ECONNRESET', 104)],
      })]);
    });

    it('should take an RST sent right before CLOSE as this end resetting (tcp_abort: ECONNABORTED)', () => {
      const e = new Endpoint({ cookie: 507, local: '10.1.0.1', lport: 40507, peer: '10.1.0.2', rport: 80 });
      const { out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT),
        e.state(us(10), S.SYN_SENT, S.ESTABLISHED, isn(57, 75)),
        e.resetSent(ms(1), S.ESTABLISHED),
        e.state(ms(1) + 1, S.ESTABLISHED, S.CLOSE, { error: 103 }),
        e.error(ms(1) + 2, 103),
      ]);
      const id = ids(57, 75);
      assert.deepEqual(out, [record({
        cookie: 507, kind: 'client', localAddress: '10.1.0.1', localPort: 40507, peerAddress: '10.1.0.2', peerPort: 80,
        startNs: us(0), endNs: ms(1) + 1, handshakeNs: 10_000, closeReason: 'reset_sent', closeInitiator: 'local',
        errno: 103, errorName: 'ECONNABORTED',
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), st(us(10), 'established'), rstTx(ms(1), 'established'), st(ms(1) + 1, 'closed'), err(ms(1) + 2, 'ECONNABORTED', 103)],
      })]);
    });

    it('should not end a connection with an RST it sent and went on from (a bad ACK in SYN_SENT)', () => {
      const e = new Endpoint({ cookie: 508, local: '10.1.0.1', lport: 40508, peer: '10.1.0.2', rport: 80 });
      const { out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT),
        e.resetSent(us(5), S.SYN_SENT),
        e.state(us(10), S.SYN_SENT, S.ESTABLISHED, isn(58, 85)),
        e.state(us(20), S.ESTABLISHED, S.CLOSE_WAIT),
        e.state(us(30), S.CLOSE_WAIT, S.LAST_ACK),
        e.state(us(40), S.LAST_ACK, S.CLOSE),
      ]);
      const id = ids(58, 85);
      assert.deepEqual(out, [record({
        cookie: 508, kind: 'client', localAddress: '10.1.0.1', localPort: 40508, peerAddress: '10.1.0.2', peerPort: 80,
        startNs: us(0), endNs: us(40), handshakeNs: 10_000, closeReason: 'fin', closeInitiator: 'peer',
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), rstTx(us(5), 'syn_sent'), st(us(10), 'established'), st(us(20), 'close_wait'), st(us(30), 'last_ack'), st(us(40), 'closed')],
      })]);
    });

    it('should keep fin when the RST comes from the timewait socket after an orderly close (emitted already: closed_socket)', () => {
      const e = new Endpoint({ cookie: 506, local: '10.1.0.1', lport: 40506, peer: '10.1.0.2', rport: 80 });
      const { c, out } = setup();
      drive(c, [
        e.state(us(0), S.CLOSE, S.SYN_SENT),
        e.state(us(10), S.SYN_SENT, S.ESTABLISHED, isn(5, 6)),
        e.state(us(20), S.ESTABLISHED, S.FIN_WAIT1),
        e.state(us(30), S.FIN_WAIT1, S.FIN_WAIT2),
        e.state(us(40), S.FIN_WAIT2, S.CLOSE),
      ]);
      const id = ids(5, 6);
      const want = [record({
        cookie: 506, kind: 'client', localAddress: '10.1.0.1', localPort: 40506, peerAddress: '10.1.0.2', peerPort: 80,
        startNs: us(0), endNs: us(40), handshakeNs: 10_000, closeReason: 'fin', closeInitiator: 'local',
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [st(us(0), 'syn_sent'), st(us(10), 'established'), st(us(20), 'fin_wait_1'), st(us(30), 'fin_wait_2'), st(us(40), 'closed')],
      })];
      assert.deepEqual(out, want);
      // the timewait socket has no life (life None): its RST cannot reopen or change the record
      drive(c, [e.resetSent(us(50), S.TIME_WAIT)]);
      c.flush(ms(1000));
      assert.deepEqual(out, want);
      assert.deepEqual(c.stats(), idle(1, { closed_socket: 1 }));
    });
  });

  describe('refused', () => {
    it('should end with refused, random ids, and ignore the RST sent by no socket', () => {
      const e = new Endpoint({ cookie: 606, local: '127.0.0.1', lport: 40606, peer: '127.0.0.1', rport: 9 });
      const closedPort = new Endpoint({ cookie: 0, local: '127.0.0.1', lport: 9, peer: '127.0.0.1', rport: 40606 });
      const node = pid(42, 'node');
      const { c, out } = run([
        e.state(us(0), S.CLOSE, S.SYN_SENT, node, stats(0, 0, 0, 0, 0)),
        closedPort.resetSent(us(20), S.CLOSE),
        e.resetReceived(us(30), S.SYN_SENT, node),
        e.state(us(31), S.SYN_SENT, S.CLOSE, node, stats(0, 0, 1, 1, 0), { error: 111 }),
        e.error(us(32), 111, node),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 606, kind: 'client', localAddress: '127.0.0.1', localPort: 40606, peerAddress: '127.0.0.1', peerPort: 9,
        startNs: us(0), endNs: us(31), handshakeNs: undefined, closeReason: 'refused', closeInitiator: 'peer',
        errno: 111, errorName: 'ECONNREFUSED', rtt: undefined, srttUs: undefined,
        bytesSent: 0, bytesReceived: 0, segmentsSent: 1, segmentsReceived: 1, pid: 42, executableName: 'node',
        traceId: RANDOM, spanId: RANDOM,
        events: [st(us(0), 'syn_sent'), rstRx(us(30), 'syn_sent'), st(us(31), 'closed'), err(us(32), 'ECONNREFUSED', 111)],
      })]);
      assert.deepEqual(c.stats(), idle(1, { no_socket: 1 }));
    });
  });

  describe('SYN timeout', () => {
    it('should count the SYN retransmits and end with timeout, initiated locally', () => {
      const e = new Endpoint({ cookie: 707, local: '10.0.0.1', lport: 41000, peer: '203.0.113.5', rport: 443 });
      const p = pid(50, 'curl');
      const { out } = run([
        e.state(ms(0), S.CLOSE, S.SYN_SENT, p, stats(0, 0, 0, 0, 0)),
        e.retransmit(ms(1000), S.SYN_SENT, 0x02, 1, 0, p, stats(0, 0, 0, 2, 0)),
        e.retransmit(ms(3000), S.SYN_SENT, 0x02, 1, 0, p, stats(0, 0, 0, 3, 0)),
        e.retransmit(ms(7000), S.SYN_SENT, 0x02, 1, 0, p, stats(0, 0, 0, 4, 0)),
        e.state(ms(15000), S.SYN_SENT, S.CLOSE, p, stats(0, 0, 0, 4, 0), { error: 110 }),
        e.error(ms(15000) + 1000, 110, p),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 707, kind: 'client', localAddress: '10.0.0.1', localPort: 41000, peerAddress: '203.0.113.5', peerPort: 443,
        startNs: ms(0), endNs: ms(15000), handshakeNs: undefined, closeReason: 'timeout', closeInitiator: 'local',
        errno: 110, errorName: 'ETIMEDOUT', retransmits: 3, rtt: undefined, srttUs: undefined,
        bytesSent: 0, bytesReceived: 0, segmentsSent: 4, segmentsReceived: 0, pid: 50, executableName: 'curl',
        traceId: RANDOM, spanId: RANDOM,
        events: [
          st(ms(0), 'syn_sent'), retx(ms(1000), 'syn_sent', 'syn', 1), retx(ms(3000), 'syn_sent', 'syn', 1),
          retx(ms(7000), 'syn_sent', 'syn', 1), st(ms(15000), 'closed'), err(ms(15000) + 1000, 'ETIMEDOUT', 110),
        ],
      })]);
    });
  });

  describe('data retransmits', () => {
    it('should sum the segments the kernel sent and count failed attempts apart', () => {
      const e = new Endpoint({ cookie: 808, local: '192.168.1.10', lport: 51000, peer: '192.168.1.20', rport: 443 });
      const p = pid(4321, 'wget');
      const { out } = run([
        e.state(ms(0), S.CLOSE, S.SYN_SENT, p, stats(0, 0, 0, 0, 0)),
        e.state(ms(20), S.SYN_SENT, S.ESTABLISHED, p, isn(1, 2), stats(1, 0, 1, 1, 20000), rtt(1, 20000, 20000, 20000)),
        e.retransmit(ms(300), S.ESTABLISHED, 0x18, 2, 0, p, stats(1, 0, 1, 5, 20000)),
        e.retransmit(ms(301), S.ESTABLISHED, 0x10, 1, -16, p, stats(1, 0, 1, 5, 20000)), // -EBUSY: not sent
        e.retransmit(ms(700), S.ESTABLISHED, 0x10, 3, 0, p, stats(1, 0, 1, 8, 20000)),
        e.state(ms(900), S.ESTABLISHED, S.FIN_WAIT1, p, stats(4001, 0, 6, 10, 25000), rtt(4, 20000, 40000, 100000)),
        e.retransmit(ms(1200), S.FIN_WAIT1, 0x11, 1, 0, p, stats(4001, 0, 6, 11, 25000)),
        e.state(ms(1250), S.FIN_WAIT1, S.FIN_WAIT2, p, stats(4002, 0, 7, 11, 25000), rtt(5, 20000, 40000, 125000)),
        e.state(ms(1300), S.FIN_WAIT2, S.CLOSE, p, stats(4002, 1, 8, 12, 25000), rtt(6, 20000, 40000, 150000)),
      ]);
      const id = ids(1, 2);
      assert.deepEqual(out, [record({
        cookie: 808, kind: 'client', localAddress: '192.168.1.10', localPort: 51000, peerAddress: '192.168.1.20', peerPort: 443,
        startNs: ms(0), endNs: ms(1300), handshakeNs: 20e6, closeReason: 'fin', closeInitiator: 'local',
        retransmits: 6, retransmitsFailed: 1, rtt: { samples: 6, minUs: 20000, avgUs: 25000, maxUs: 40000 }, srttUs: 25000,
        bytesSent: 4000, bytesReceived: 0, segmentsSent: 12, segmentsReceived: 8, pid: 4321, executableName: 'wget',
        traceId: id.traceId, spanId: id.clientSpanId,
        events: [
          st(ms(0), 'syn_sent'), st(ms(20), 'established'), retx(ms(300), 'established', 'data', 2),
          retx(ms(301), 'established', 'data', 1, 'EBUSY'), retx(ms(700), 'established', 'data', 3), st(ms(900), 'fin_wait_1'),
          retx(ms(1200), 'fin_wait_1', 'fin', 1), st(ms(1250), 'fin_wait_2'), st(ms(1300), 'closed'),
        ],
      })]);
    });
  });

  describe('SYN-ACK retransmits', () => {
    it('should attach them to the server end of the same netns and tuple, and expire the rest', () => {
      const e = new Endpoint({ cookie: 909, local: '10.0.0.2', lport: 80, peer: '10.0.0.9', rport: 50000 });
      const otherNetns = new Endpoint({ ...e.spec, netns: 4026532000 });
      const otherPeer = new Endpoint({ ...e.spec, rport: 50001 });
      const { c, out } = setup();
      drive(c, [
        e.synAckRetransmit(ms(1000)),
        otherNetns.synAckRetransmit(ms(1001)),
        otherPeer.synAckRetransmit(ms(1002)),
        e.synAckRetransmit(ms(3000)),
      ]);
      assert.deepEqual(c.stats(), { ...idle(0), pendingSynAcks: 3 });
      const syn0 = { synNs: ms(0) };
      drive(c, [
        e.state(ms(3001), S.LISTEN, S.SYN_RECV, syn0, stats(0, 0, 0, 0, 0)),
        e.state(ms(3001) + 1000, S.SYN_RECV, S.ESTABLISHED, syn0, isn(0xaaaa0001, 0xbbbb0002), stats(0, 0, 1, 3, 1000)),
        e.state(ms(3100), S.ESTABLISHED, S.CLOSE_WAIT, syn0, stats(0, 1, 2, 3, 1000)),
        e.state(ms(3101), S.CLOSE_WAIT, S.LAST_ACK, syn0, stats(0, 1, 2, 4, 1000)),
        e.state(ms(3102), S.LAST_ACK, S.CLOSE, syn0, stats(1, 1, 3, 4, 1000)),
      ]);
      c.tick(ms(3102) + LINGER_NS);
      const id = ids(0xbbbb0002, 0xaaaa0001);
      assert.deepEqual(out, [record({
        cookie: 909, kind: 'server', localAddress: '10.0.0.2', localPort: 80, peerAddress: '10.0.0.9', peerPort: 50000,
        startNs: ms(0), endNs: ms(3102), handshakeNs: 3_001_001_000, closeReason: 'fin', closeInitiator: 'peer',
        retransmits: 2, rtt: undefined, srttUs: 1000, bytesSent: 0, bytesReceived: 0, segmentsSent: 4, segmentsReceived: 3,
        traceId: id.traceId, spanId: id.serverSpanId, parentSpanId: id.clientSpanId,
        events: [
          retx(ms(1000), 'syn_received', 'syn_ack', 1), retx(ms(3000), 'syn_received', 'syn_ack', 1),
          st(ms(3001), 'syn_received'), st(ms(3001) + 1000, 'established'), st(ms(3100), 'close_wait'),
          st(ms(3101), 'last_ack'), st(ms(3102), 'closed'),
        ],
      })]);
      assert.deepEqual(c.stats(), { ...idle(1), pendingSynAcks: 2 });
      c.tick(ms(1000) + SYNACK_PENDING_TTL_NS);
      assert.deepEqual(c.stats(), { ...idle(1), pendingSynAcks: 2 });
      c.tick(ms(1002) + SYNACK_PENDING_TTL_NS);
      assert.deepEqual(c.stats(), idle(1, { synack_unmatched: 2 }));
    });

    it('should match a dual-stack server end (IPv4-mapped) to SYN-ACK retransmits reported as IPv4', () => {
      const v4 = new Endpoint({ cookie: 0, local: '10.0.0.2', lport: 8443, peer: '10.0.0.9', rport: 50100 });
      const e = new Endpoint({ cookie: 910, local: '::ffff:10.0.0.2', lport: 8443, peer: '::ffff:10.0.0.9', rport: 50100 });
      const { c, out } = run([
        v4.synAckRetransmit(ms(1000)),
        e.state(ms(1001), S.LISTEN, S.SYN_RECV, { synNs: ms(0) }),
        e.state(ms(1002), S.SYN_RECV, S.ESTABLISHED, { synNs: ms(0) }, isn(9, 10)),
        e.state(ms(1003), S.ESTABLISHED, S.CLOSE, { error: 104 }),
      ]);
      const id = ids(10, 9);
      assert.deepEqual(out, [record({
        cookie: 910, kind: 'server', family: 'ipv6', localAddress: '::ffff:10.0.0.2', localPort: 8443, peerAddress: '::ffff:10.0.0.9',
        peerPort: 50100, startNs: ms(0), endNs: ms(1003), handshakeNs: 1002e6, closeReason: 'reset_received', closeInitiator: 'peer',
        errno: 104, errorName: 'ECONNRESET', retransmits: 1,
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: id.traceId, spanId: id.serverSpanId, parentSpanId: id.clientSpanId,
        events: [retx(ms(1000), 'syn_received', 'syn_ack', 1), st(ms(1001), 'syn_received'), st(ms(1002), 'established'), st(ms(1003), 'closed')],
      })]);
      assert.deepEqual(c.stats(), idle(1));
    });

    it('should attach them to a server end whose first record was a rare event', () => {
      const e = new Endpoint({ cookie: 911, local: '10.0.0.2', lport: 80, peer: '10.0.0.9', rport: 50200 });
      const { c, out } = run([
        e.synAckRetransmit(ms(1000)),
        e.state(ms(1001), S.LISTEN, S.SYN_RECV, { synNs: ms(0) }),
        // a reset before ESTABLISHED: the rare event comes before the end's first connection record
        e.resetReceived(ms(1001) + 500, S.SYN_RECV),
        e.state(ms(1002), S.SYN_RECV, S.ESTABLISHED, { synNs: ms(0) }, isn(11, 12)),
        e.state(ms(1003), S.ESTABLISHED, S.CLOSE, { error: 104 }),
      ]);
      assert.equal(out.length, 1);
      assert.equal(out[0]!.retransmits, 1);
      assert.deepEqual(out[0]!.events.map((x) => x.name),
        ['tcp.retransmit', 'tcp.state_change', 'tcp.reset_received', 'tcp.state_change', 'tcp.state_change']);
      assert.deepEqual(c.stats(), idle(1));
    });

    it('should push the stalest tuple out when the pending map is full', () => {
      const { c } = setup({ maxPendingSynAcks: 2 });
      const tuple = (rport: number) => new Endpoint({ cookie: 0, local: '10.0.0.2', lport: 80, peer: '10.0.0.9', rport });
      drive(c, [tuple(1).synAckRetransmit(ms(1)), tuple(1).synAckRetransmit(ms(2)), tuple(2).synAckRetransmit(ms(3)), tuple(3).synAckRetransmit(ms(4))]);
      assert.deepEqual(c.stats(), { ...idle(0, { synack_overflow: 2 }), pendingSynAcks: 2 });
      c.flush(ms(5));
      assert.deepEqual(c.stats(), idle(0, { synack_overflow: 2, synack_unmatched: 2 }));
    });
  });

  describe('missing events', () => {
    it('should take a first event mid-connection as open before start, of unknown kind', () => {
      // its port bound by bind() or listen(): a server end (or a client that bound its port)
      const e = new Endpoint({ cookie: 1010, local: '10.0.0.1', lport: 22, peer: '10.0.0.50', rport: 60000, portOrigin: PortOrigin.Bound });
      const sshd = pid(1, 'sshd');
      const { out } = run([
        e.state(ms(10), S.ESTABLISHED, S.FIN_WAIT1, sshd, stats(5001, 7000, 50, 60, 300), rtt(40, 200, 900, 16000)),
        e.state(ms(11), S.FIN_WAIT1, S.FIN_WAIT2, sshd, stats(5002, 7000, 51, 60, 300), rtt(40, 200, 900, 16000)),
        e.state(ms(12), S.FIN_WAIT2, S.CLOSE, sshd, stats(5002, 7001, 52, 61, 300), rtt(41, 200, 900, 16400)),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 1010, kind: 'unknown', localAddress: '10.0.0.1', localPort: 22, peerAddress: '10.0.0.50', peerPort: 60000,
        startNs: ms(10), endNs: ms(12), handshakeNs: undefined, closeReason: 'fin', closeInitiator: 'local', openBeforeStart: true,
        rtt: { samples: 41, minUs: 200, avgUs: 400, maxUs: 900 }, srttUs: 300,
        // a bound port: not known to have sent the SYN, so nothing is taken for it (its FIN is)
        bytesSent: 5001, bytesReceived: 7000, segmentsSent: 61, segmentsReceived: 52, pid: 1, executableName: 'sshd',
        traceId: RANDOM, spanId: RANDOM,
        events: [st(ms(10), 'fin_wait_1'), st(ms(11), 'fin_wait_2'), st(ms(12), 'closed')],
      })]);
    });
  });

  describe('open before start', () => {
    it('should not count the SYN of an end first seen open whose port connect() picked, and count it for the others', () => {
      const steps = (e: Endpoint) => [
        e.state(ms(10), S.ESTABLISHED, S.FIN_WAIT1, stats(12001, 3000, 20, 20, 300)),
        e.state(ms(11), S.FIN_WAIT1, S.FIN_WAIT2, stats(12002, 3000, 21, 20, 300)),
        e.state(ms(12), S.FIN_WAIT2, S.CLOSE, stats(12002, 3001, 22, 21, 300)),
      ];
      const tuple = { local: '10.0.0.1', lport: 50000, peer: '10.0.0.2', rport: 80 };
      const sent = (portOrigin: number | undefined, cookie: number) =>
        run(steps(new Endpoint({ cookie, ...tuple, ...(portOrigin !== undefined && { portOrigin }) }))).out.map((r) => [r.kind, r.openBeforeStart, r.bytesSent, r.bytesReceived]);
      // connect() picked the port: the active opener, whose bytes_acked counts its SYN (and its FIN)
      assert.deepEqual(sent(PortOrigin.Connect, 1), [['unknown', true, 12000, 3000]]);
      // bound, or not known: only the FIN is taken (a client that bound its port reports its SYN as a byte)
      assert.deepEqual(sent(PortOrigin.Bound, 2), [['unknown', true, 12001, 3000]]);
      assert.deepEqual(sent(undefined, 3), [['unknown', true, 12001, 3000]]);
    });

    it('should record a connection first seen retransmitting', () => {
      const e = new Endpoint({ cookie: 1313, local: '10.0.0.1', lport: 6379, peer: '10.0.0.60', rport: 33000 });
      const { c, out } = run([
        // the kernel gives the socket a life at first sight (life Midway): its start is this retransmit
        e.retransmit(ms(0), S.ESTABLISHED, 0x18, 1, 0, stats(900, 100, 10, 12, 5000)),
        e.resetReceived(ms(50), S.ESTABLISHED),
        e.state(ms(50) + 100, S.ESTABLISHED, S.CLOSE, stats(900, 100, 11, 12, 5000), { error: 104 }),
        e.error(ms(50) + 200, 104),
      ]);
      assert.deepEqual(out.map(randomIds), [record({
        cookie: 1313, kind: 'unknown', localAddress: '10.0.0.1', localPort: 6379, peerAddress: '10.0.0.60', peerPort: 33000,
        startNs: ms(0), endNs: ms(50) + 100, handshakeNs: undefined, closeReason: 'reset_received', closeInitiator: 'peer',
        errno: 104, errorName: 'ECONNRESET', retransmits: 1, openBeforeStart: true, rtt: undefined, srttUs: 5000,
        bytesSent: 900, bytesReceived: 100, segmentsSent: 12, segmentsReceived: 11,
        traceId: RANDOM, spanId: RANDOM,
        events: [retx(ms(0), 'established', 'data', 1), rstRx(ms(50), 'established'), st(ms(50) + 100, 'closed'), err(ms(50) + 200, 'ECONNRESET', 104)],
      })]);
      assert.deepEqual(c.stats(), idle(1));
    });

    // the kernel starts no life for a socket already closed: its events come with life None
    it('should drop events of closed sockets it never tracked', () => {
      const ghost = new Endpoint({ cookie: 1314, local: '10.0.0.1', lport: 6379, peer: '10.0.0.61', rport: 33001 });
      const { c, out } = setup();
      drive(c, [ghost.error(ms(60), 104), ghost.resetSent(ms(61), S.CLOSE)]);
      c.tick(ms(61) + LINGER_NS);
      c.flush(ms(1000));
      assert.deepEqual(out, []);
      assert.deepEqual(c.stats(), idle(0, { closed_socket: 2 }));
    });
  });

  describe('late events', () => {
    it('should count events for a connection already emitted as closed_socket instead of opening a new one', () => {
      const e = new Endpoint({ cookie: 362, local: '10.0.0.5', lport: 40362, peer: '192.0.2.1', rport: 80 });
      const { c, out } = setup();
      // an orderly close is emitted at once; the kernel sends what follows with life None
      drive(c, activeClose);
      drive(c, [CLIENT.resetSent(us(3250) + 1, S.CLOSE), CLIENT.error(us(3250) + 2, 104)]);
      // any other close is emitted when its linger runs out; what comes after that is late too
      drive(c, [e.state(ms(0), S.CLOSE, S.SYN_SENT), e.state(ms(3), S.SYN_SENT, S.CLOSE, { error: 113 })]);
      c.tick(ms(3) + LINGER_NS);
      drive(c, [e.error(ms(3) + LINGER_NS + 1, 113)]);
      c.flush(ms(1000));
      assert.deepEqual(out.map((r) => (r.cookie === 362 ? randomIds(r) : r)), [activeCloseRecord, record({
        cookie: 362, kind: 'client', localAddress: '10.0.0.5', localPort: 40362, peerAddress: '192.0.2.1', peerPort: 80,
        startNs: ms(0), endNs: ms(3), handshakeNs: undefined, closeReason: 'aborted', closeInitiator: undefined,
        errno: 113, errorName: 'EHOSTUNREACH',
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: RANDOM, spanId: RANDOM,
        events: [st(ms(0), 'syn_sent'), st(ms(3), 'closed')],
      })]);
      assert.deepEqual(c.stats(), idle(2, { closed_socket: 3 }));
    });
  });

  describe('4-tuple reuse', () => {
    it('should keep two cookies on the same tuple as two records', () => {
      const tuple = { local: '10.0.0.1', lport: 40000, peer: '10.0.0.2', rport: 80 };
      const a = new Endpoint({ cookie: 41, ...tuple }), b = new Endpoint({ cookie: 42, ...tuple });
      const { out } = run([
        a.state(ms(0), S.CLOSE, S.SYN_SENT), a.state(ms(1), S.SYN_SENT, S.ESTABLISHED, isn(1000, 2000)),
        a.state(ms(2), S.ESTABLISHED, S.FIN_WAIT1), a.state(ms(3), S.FIN_WAIT1, S.FIN_WAIT2), a.state(ms(4), S.FIN_WAIT2, S.CLOSE),
        b.state(ms(4) + 10, S.CLOSE, S.SYN_SENT), b.state(ms(5), S.SYN_SENT, S.ESTABLISHED, isn(3000, 4000)),
        b.state(ms(6), S.ESTABLISHED, S.CLOSE_WAIT), b.state(ms(7), S.CLOSE_WAIT, S.LAST_ACK), b.state(ms(8), S.LAST_ACK, S.CLOSE),
      ]);
      const idA = ids(1000, 2000), idB = ids(3000, 4000);
      const common = {
        kind: 'client', localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80, handshakeNs: 1e6,
        closeReason: 'fin', rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined,
        segmentsSent: undefined, segmentsReceived: undefined,
      } as const;
      assert.deepEqual(out, [
        record({
          ...common, cookie: 41, startNs: ms(0), endNs: ms(4), closeInitiator: 'local', traceId: idA.traceId, spanId: idA.clientSpanId,
          events: [st(ms(0), 'syn_sent'), st(ms(1), 'established'), st(ms(2), 'fin_wait_1'), st(ms(3), 'fin_wait_2'), st(ms(4), 'closed')],
        }),
        record({
          ...common, cookie: 42, startNs: ms(4) + 10, endNs: ms(8), handshakeNs: ms(5) - ms(4) - 10, closeInitiator: 'peer',
          traceId: idB.traceId, spanId: idB.clientSpanId,
          events: [st(ms(4) + 10, 'syn_sent'), st(ms(5), 'established'), st(ms(6), 'close_wait'), st(ms(7), 'last_ack'), st(ms(8), 'closed')],
        }),
      ]);
    });

    const e51 = new Endpoint({ cookie: 51, local: '10.0.0.1', lport: 40051, peer: '10.0.0.2', rport: 80 });
    const common51 = {
      cookie: 51, kind: 'client', localAddress: '10.0.0.1', localPort: 40051, peerAddress: '10.0.0.2', peerPort: 80,
      rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
    } as const;
    const refused51 = record({
      ...common51, startNs: ms(0), endNs: ms(1) + 1, handshakeNs: undefined, closeReason: 'refused', closeInitiator: 'peer',
      errno: 111, errorName: 'ECONNREFUSED', traceId: RANDOM, spanId: RANDOM,
      events: [st(ms(0), 'syn_sent'), rstRx(ms(1), 'syn_sent'), st(ms(1) + 1, 'closed'), err(ms(1) + 2, 'ECONNREFUSED', 111)],
    });
    const refusedSteps51 = [
      e51.state(ms(0), S.CLOSE, S.SYN_SENT), e51.resetReceived(ms(1), S.SYN_SENT), e51.state(ms(1) + 1, S.SYN_SENT, S.CLOSE, { error: 111 }),
      e51.error(ms(1) + 2, 111),
    ];
    const closeSteps51 = [e51.state(ms(4), S.ESTABLISHED, S.CLOSE_WAIT), e51.state(ms(5), S.CLOSE_WAIT, S.LAST_ACK), e51.state(ms(6), S.LAST_ACK, S.CLOSE)];

    it('should emit the lingering record at once when the same socket\'s next life is reported', () => {
      const { c, out } = setup();
      drive(c, [...refusedSteps51, e51.state(ms(2), S.CLOSE, S.SYN_SENT)]); // connect() again on the same socket
      // the kernel reports the new life at ESTABLISHED (its Open record); until then the refused one lingers
      assert.deepEqual(out, []);
      assert.deepEqual(c.stats(), { ...idle(0), lingeringConnections: 1 });
      drive(c, [e51.state(ms(3), S.SYN_SENT, S.ESTABLISHED, isn(7, 8))]);
      assert.deepEqual(out.map(randomIds), [refused51]);
      assert.deepEqual(c.stats(), { ...idle(1), openConnections: 1 });
      drive(c, closeSteps51);
      const id = ids(7, 8);
      assert.deepEqual(out.map((r, i) => (i === 0 ? randomIds(r) : r)), [
        refused51,
        record({
          ...common51, startNs: ms(2), endNs: ms(6), handshakeNs: 1e6, closeReason: 'fin', closeInitiator: 'peer',
          traceId: id.traceId, spanId: id.clientSpanId,
          events: [st(ms(2), 'syn_sent'), st(ms(3), 'established'), st(ms(4), 'close_wait'), st(ms(5), 'last_ack'), st(ms(6), 'closed')],
        }),
      ]);
      assert.deepEqual(c.stats(), idle(2));
    });

    it('should attach a rare event of the next life to that life, not to the lingering previous one', () => {
      const { c, out } = setup();
      drive(c, [
        ...refusedSteps51, e51.state(ms(2), S.CLOSE, S.SYN_SENT), e51.retransmit(ms(2) + 500, S.SYN_SENT, 0x02, 1, 0),
        e51.state(ms(3), S.SYN_SENT, S.ESTABLISHED, isn(7, 8)), ...closeSteps51,
      ]);
      const id = ids(7, 8);
      assert.deepEqual(out.map((r, i) => (i === 0 ? randomIds(r) : r)), [
        refused51,
        record({
          ...common51, startNs: ms(2), endNs: ms(6), handshakeNs: 1e6, closeReason: 'fin', closeInitiator: 'peer', retransmits: 1,
          traceId: id.traceId, spanId: id.clientSpanId,
          events: [st(ms(2), 'syn_sent'), retx(ms(2) + 500, 'syn_sent', 'syn', 1), st(ms(3), 'established'), st(ms(4), 'close_wait'),
            st(ms(5), 'last_ack'), st(ms(6), 'closed')],
        }),
      ]);
    });
  });

  describe('kernel loss', () => {
    it('should flag ends whose life lost a record, and ends open at flush after a loss; not ends whose Close came', () => {
      const a = new Endpoint({ cookie: 1, local: '10.0.0.1', lport: 40001, peer: '10.0.0.2', rport: 80 });
      const b = new Endpoint({ cookie: 2, local: '10.0.0.1', lport: 80, peer: '10.0.0.3', rport: 50002 });
      const d = new Endpoint({ cookie: 3, local: '10.0.0.1', lport: 40003, peer: '10.0.0.2', rport: 80 });
      const o = new Endpoint({ cookie: 4, local: '10.0.0.1', lport: 40004, peer: '10.0.0.2', rport: 80 });
      const { c, out } = setup();
      drive(c, [
        a.state(ms(0), S.CLOSE, S.SYN_SENT), a.state(ms(1), S.SYN_SENT, S.ESTABLISHED, isn(10, 20)),
        o.state(ms(2), S.CLOSE, S.SYN_SENT), o.state(ms(3), S.SYN_SENT, S.ESTABLISHED, isn(50, 60)),
      ]);
      c.markKernelLoss();
      // b's life is seen midway; the kernel could not write one of its records (ring full) and says so at its Close
      const bRecords = simulateKernel([
        b.state(ms(5), S.ESTABLISHED, S.CLOSE_WAIT), b.state(ms(13), S.CLOSE_WAIT, S.LAST_ACK), b.state(ms(14), S.LAST_ACK, S.CLOSE),
      ]).map((r) => (r.kind === EventKind.Close ? { ...r, flags: r.flags | EventFlag.Lost } : r));
      drive(c, [
        d.state(ms(6), S.CLOSE, S.SYN_SENT), d.state(ms(7), S.SYN_SENT, S.ESTABLISHED, isn(30, 40)),
        a.state(ms(10), S.ESTABLISHED, S.FIN_WAIT1), a.state(ms(11), S.FIN_WAIT1, S.FIN_WAIT2), a.state(ms(12), S.FIN_WAIT2, S.CLOSE),
      ]);
      feed(c, bRecords);
      c.flush(ms(20));
      const noStats = {
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
      };
      const client = { kind: 'client', localAddress: '10.0.0.1', peerAddress: '10.0.0.2', peerPort: 80, handshakeNs: 1e6 } as const;
      const idA = ids(10, 20), idD = ids(30, 40), idO = ids(50, 60);
      assert.deepEqual(out.map((r) => (r.cookie === 2 ? randomIds(r) : r)), [
        // open at the loss, but its Close came, and its life says nothing of it was lost
        record({
          ...noStats, ...client, cookie: 1, localPort: 40001,
          startNs: ms(0), endNs: ms(12), closeReason: 'fin', closeInitiator: 'local',
          traceId: idA.traceId, spanId: idA.clientSpanId,
          events: [st(ms(0), 'syn_sent'), st(ms(1), 'established'), st(ms(10), 'fin_wait_1'), st(ms(11), 'fin_wait_2'), st(ms(12), 'closed')],
        }),
        record({
          ...noStats, cookie: 2, kind: 'unknown', localAddress: '10.0.0.1', localPort: 80, peerAddress: '10.0.0.3', peerPort: 50002,
          startNs: ms(5), endNs: ms(14), handshakeNs: undefined, closeReason: 'fin', closeInitiator: 'peer', openBeforeStart: true,
          kernelEventsLost: true, traceId: RANDOM, spanId: RANDOM,
          events: [st(ms(5), 'close_wait'), st(ms(13), 'last_ack'), st(ms(14), 'closed')],
        }),
        // open at the loss and still open at flush: its Close may have been lost
        record({
          ...noStats, ...client, cookie: 4, localPort: 40004,
          startNs: ms(2), endNs: ms(20), closeReason: 'incomplete', closeInitiator: undefined, kernelEventsLost: true,
          traceId: idO.traceId, spanId: idO.clientSpanId, events: [st(ms(2), 'syn_sent'), st(ms(3), 'established')],
        }),
        // opened after the loss: not flagged
        record({
          ...noStats, ...client, cookie: 3, localPort: 40003,
          startNs: ms(6), endNs: ms(20), closeReason: 'incomplete', closeInitiator: undefined,
          traceId: idD.traceId, spanId: idD.clientSpanId, events: [st(ms(6), 'syn_sent'), st(ms(7), 'established')],
        }),
      ]);
      assert.deepEqual(c.stats(), idle(4));
    });
  });

  describe('shutdown', () => {
    it('should end open connections as incomplete, finalize lingering ones normally, and be safe to call twice', () => {
      const open = new Endpoint({ cookie: 21, local: '10.0.0.1', lport: 40021, peer: '10.0.0.2', rport: 80 });
      const reset = new Endpoint({ cookie: 22, local: '10.0.0.1', lport: 40022, peer: '10.0.0.2', rport: 80 });
      const { c, out } = setup();
      drive(c, [
        open.state(ms(0), S.CLOSE, S.SYN_SENT, curl), open.state(ms(1), S.SYN_SENT, S.ESTABLISHED, curl, isn(21, 12), stats(1, 0, 1, 1, 900)),
        reset.state(ms(2), S.CLOSE, S.SYN_SENT), reset.state(ms(3), S.SYN_SENT, S.ESTABLISHED, isn(22, 23)),
        reset.resetReceived(ms(4), S.ESTABLISHED), reset.state(ms(4) + 1, S.ESTABLISHED, S.CLOSE, { error: 104 }),
        ...activeClose,
      ]);
      // the orderly close is out already; the reset one lingers
      assert.deepEqual(out, [activeCloseRecord]);
      assert.deepEqual(c.stats(), { ...idle(1), openConnections: 1, lingeringConnections: 1 });
      c.flush(ms(6));
      c.flush(ms(7));
      const id = ids(21, 12), idReset = ids(22, 23);
      assert.deepEqual(out, [
        activeCloseRecord,
        record({
          cookie: 21, kind: 'client', localAddress: '10.0.0.1', localPort: 40021, peerAddress: '10.0.0.2', peerPort: 80,
          startNs: ms(0), endNs: ms(6), handshakeNs: 1e6, closeReason: 'incomplete', closeInitiator: undefined,
          rtt: undefined, srttUs: 900, bytesSent: 0, bytesReceived: 0, segmentsSent: 1, segmentsReceived: 1, pid: 1234, executableName: 'curl',
          traceId: id.traceId, spanId: id.clientSpanId, events: [st(ms(0), 'syn_sent'), st(ms(1), 'established')],
        }),
        record({
          cookie: 22, kind: 'client', localAddress: '10.0.0.1', localPort: 40022, peerAddress: '10.0.0.2', peerPort: 80,
          startNs: ms(2), endNs: ms(4) + 1, handshakeNs: 1e6, closeReason: 'reset_received', closeInitiator: 'peer',
          errno: 104, errorName: 'ECONNRESET',
          rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
          traceId: idReset.traceId, spanId: idReset.clientSpanId,
          events: [st(ms(2), 'syn_sent'), st(ms(3), 'established'), rstRx(ms(4), 'established'), st(ms(4) + 1, 'closed')],
        }),
      ]);
      assert.deepEqual(c.stats(), idle(3));
    });
  });

  describe('eviction', () => {
    const a = new Endpoint({ cookie: 31, local: '10.0.0.1', lport: 40031, peer: '10.0.0.2', rport: 80 });
    const b = new Endpoint({ cookie: 32, local: '10.0.0.1', lport: 40032, peer: '10.0.0.2', rport: 80 });
    const n = new Endpoint({ cookie: 33, local: '10.0.0.1', lport: 40033, peer: '10.0.0.2', rport: 80 });
    const base = {
      kind: 'client', localAddress: '10.0.0.1', localPort: 40031, peerAddress: '10.0.0.2', peerPort: 80, startNs: ms(0), handshakeNs: 1e6,
      rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
      cookie: 31, traceId: ids(31, 13).traceId, spanId: ids(31, 13).clientSpanId,
    } as const;

    const evictedA = record({
      ...base, endNs: ms(4), closeReason: 'incomplete', closeInitiator: undefined, evicted: true,
      events: [st(ms(0), 'syn_sent'), st(ms(1), 'established')],
    });
    // the kernel reports an end at ESTABLISHED (Open record): n needs room then
    const openABN = [
      a.state(ms(0), S.CLOSE, S.SYN_SENT), a.state(ms(1), S.SYN_SENT, S.ESTABLISHED, isn(31, 13)),
      b.state(ms(2), S.CLOSE, S.SYN_SENT), b.state(ms(3), S.SYN_SENT, S.ESTABLISHED, isn(32, 23)),
      n.state(ms(3) + 500, S.CLOSE, S.SYN_SENT), n.state(ms(4), S.SYN_SENT, S.ESTABLISHED, isn(33, 43)),
    ];

    it('should evict the oldest open connection as incomplete at maxConnections', () => {
      const { c, out } = setup({ maxConnections: 2 });
      drive(c, openABN);
      assert.deepEqual(out, [evictedA]);
      assert.deepEqual(c.stats(), { ...idle(1, {}, 1), openConnections: 2 });
    });

    // the kernel still sends an evicted end's records (it has not ended): they are counted, never a second span
    it('should not bring an evicted connection back for its later records', () => {
      const { c, out } = setup({ maxConnections: 2 });
      drive(c, [
        ...openABN,
        a.retransmit(ms(5), S.ESTABLISHED, 0x18, 1, 0),
        a.state(ms(6), S.ESTABLISHED, S.FIN_WAIT1), a.state(ms(7), S.FIN_WAIT1, S.FIN_WAIT2), a.state(ms(8), S.FIN_WAIT2, S.CLOSE),
      ]);
      assert.deepEqual(out, [evictedA]);
      assert.deepEqual(c.stats(), { ...idle(1, { evicted: 2 }, 1), openConnections: 2 });
    });

    it('should emit a lingering connection early rather than evict an open one', () => {
      const { c, out } = setup({ maxConnections: 2 });
      drive(c, [
        a.state(ms(0), S.CLOSE, S.SYN_SENT), a.state(ms(1), S.SYN_SENT, S.ESTABLISHED, isn(31, 13)),
        // not an orderly close: it lingers
        a.resetReceived(ms(2), S.ESTABLISHED), a.state(ms(3), S.ESTABLISHED, S.CLOSE, { error: 104 }),
        b.state(ms(3), S.CLOSE, S.SYN_SENT), b.state(ms(3) + 500, S.SYN_SENT, S.ESTABLISHED, isn(32, 23)),
        n.state(ms(4), S.CLOSE, S.SYN_SENT), n.state(ms(4) + 500, S.SYN_SENT, S.ESTABLISHED, isn(33, 43)),
      ]);
      assert.deepEqual(out, [record({
        ...base, endNs: ms(3), closeReason: 'reset_received', closeInitiator: 'peer', errno: 104, errorName: 'ECONNRESET',
        events: [st(ms(0), 'syn_sent'), st(ms(1), 'established'), rstRx(ms(2), 'established'), st(ms(3), 'closed')],
      })]);
      assert.deepEqual(c.stats(), { ...idle(1), openConnections: 2 });
    });
  });

  describe('events cap', () => {
    it('should cut retransmit events first, keep how the connection ended, and count the cut', () => {
      const e = new Endpoint({ cookie: 1717, local: '10.0.0.1', lport: 40017, peer: '10.0.0.2', rport: 80 });
      const retransmits = Array.from({ length: 20 }, (_, i) => e.retransmit(ms(10 + i), S.ESTABLISHED, 0x18, 1, 0));
      const { c, out } = run([
        e.state(ms(0), S.CLOSE, S.SYN_SENT), e.state(ms(1), S.SYN_SENT, S.ESTABLISHED, isn(17, 71)),
        ...retransmits,
        e.state(ms(40), S.ESTABLISHED, S.FIN_WAIT1), e.state(ms(41), S.FIN_WAIT1, S.FIN_WAIT2), e.state(ms(42), S.FIN_WAIT2, S.CLOSE),
      ], { maxEventsPerSpan: 12 });
      // 12 slots: 12 retransmits kept on arrival (8 cut); at emission the 5 transitions (in the Close record)
      // come first, and the first 7 retransmits fill the room left (5 more cut)
      const id = ids(17, 71);
      assert.deepEqual(out, [record({
        cookie: 1717, kind: 'client', localAddress: '10.0.0.1', localPort: 40017, peerAddress: '10.0.0.2', peerPort: 80,
        startNs: ms(0), endNs: ms(42), handshakeNs: 1e6, closeReason: 'fin', closeInitiator: 'local', retransmits: 20,
        rtt: undefined, srttUs: undefined, bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
        traceId: id.traceId, spanId: id.clientSpanId, droppedEvents: 13,
        events: [
          st(ms(0), 'syn_sent'), st(ms(1), 'established'), ...[10, 11, 12, 13, 14, 15, 16].map((t) => retx(ms(t), 'established', 'data', 1)),
          st(ms(40), 'fin_wait_1'), st(ms(41), 'fin_wait_2'), st(ms(42), 'closed'),
        ],
      })]);
      assert.deepEqual(c.stats(), idle(1, { event_cap: 13 }));
    });
  });

  describe('both ends on one host', () => {
    it('should give both ends one trace id, the server span a child of the client span', () => {
      const both = [...activeClose, ...passiveClose].sort((x, y) => x.tsNs - y.tsNs);
      const { out } = run(both);
      assert.deepEqual(out, [activeCloseRecord, passiveCloseRecord]);
      assert.equal(out[1]!.traceId, out[0]!.traceId);
      assert.equal(out[1]!.parentSpanId, out[0]!.spanId);
    });
  });

  describe('robustness', () => {
    it('should never throw: unknown kinds and a failing sink are counted, and work goes on', () => {
      let calls = 0;
      const c = createCorrelator(OPTS, () => {
        calls++;
        throw new Error('exporter down');
      });
      const junk: KernelEvent = { ...newKernelEvent(), tsNs: us(0), cookie: 101, kind: 99 };
      assert.doesNotThrow(() => {
        feed(c, [junk]);
        drive(c, [...activeClose, ...passiveClose]);
        c.onEvent({} as KernelEvent);
        c.tick(ms(1000));
      });
      assert.equal(calls, 2);
      assert.deepEqual(c.stats(), idle(2, { unknown_kind: 2, sink_error: 2 }));
    });
  });
});

describe('trace identity', () => {
  it('should give both ends the same ids from the ISNs they see crosswise', () => {
    const client = traceIdentityFromIsn(CLIENT_ISN, SERVER_ISN);
    const server = traceIdentityFromIsn(CLIENT_ISN, SERVER_ISN);
    assert.deepEqual(client, server);
    assert.deepEqual(client, IDS);
  });

  it('should give different ids for different ISNs, in either order', () => {
    const all = [
      traceIdentityFromIsn(1, 2), traceIdentityFromIsn(2, 1), traceIdentityFromIsn(1, 3), traceIdentityFromIsn(0, 0),
      traceIdentityFromIsn(0xffffffff, 0xffffffff),
    ];
    const values = all.flatMap((i) => [i.traceId, i.clientSpanId, i.serverSpanId]);
    assert.equal(new Set(values).size, values.length);
    for (const i of all) {
      assert.match(i.traceId, /^(?!0{32})[0-9a-f]{32}$/);
      assert.match(i.clientSpanId, /^(?!0{16})[0-9a-f]{16}$/);
      assert.match(i.serverSpanId, /^(?!0{16})[0-9a-f]{16}$/);
    }
  });

  it('should make random ids well formed and distinct', () => {
    const ids = Array.from({ length: 1000 }, () => randomTraceIdentity());
    assert.equal(new Set(ids.map((i) => i.traceId)).size, 1000);
    for (const i of ids) {
      assert.match(i.traceId, /^(?!0{32})[0-9a-f]{32}$/);
      assert.match(i.spanId, /^(?!0{16})[0-9a-f]{16}$/);
    }
  });
});

describe('toSpanData', () => {
  const OFFSET = 1_700_000_000_000_000_000; // CLOCK_MONOTONIC to Unix epoch, exact as a double
  const off = epochOffset((mono: number) => mono + OFFSET);
  const epoch = (mono: number) => BigInt(OFFSET) + BigInt(mono);
  /** the HrTime expected, computed exactly in bigint */
  const at = (mono: number) => toHrTime(epoch(mono));
  const spanEvents = (r: ConnectionRecord) => r.events.map((e) => ({ name: e.name, time: at(e.timeNs), attributes: e.attributes }));

  it('should make a client span with every attribute of an orderly connection', () => {
    const want: SpanData = {
      name: 'tcp.connection', kind: 'client', traceId: IDS.traceId, spanId: IDS.clientSpanId,
      startTime: at(us(0)), endTime: at(us(3250)),
      attributes: {
        'network.transport': 'tcp', 'network.type': 'ipv4', 'network.local.address': '10.0.0.1', 'network.local.port': 40000,
        'network.peer.address': '10.0.0.2', 'network.peer.port': 80, 'process.pid': 1234, 'process.executable.name': 'curl',
        'tcp.close.reason': 'fin', 'tcp.close.initiator': 'local', 'tcp.handshake.duration': 0.0005, 'tcp.retransmits': 0,
        'tcp.rtt.min': 0.0004, 'tcp.rtt.avg': 0.00045, 'tcp.rtt.max': 0.0005, 'tcp.rtt.samples': 4, 'tcp.rtt.smoothed': 0.00045,
        'tcp.bytes.sent': 100, 'tcp.bytes.received': 300, 'tcp.segments.sent': 5, 'tcp.segments.received': 5,
        'tcpspan.netns': NETNS, 'tcpspan.socket.cookie': 101,
      },
      events: spanEvents(activeCloseRecord), droppedEventsCount: 0, status: { code: 'unset' },
    };
    assert.deepEqual(toSpanData(activeCloseRecord, off), want);
  });

  it('should make the server span a child of the client span', () => {
    const want: SpanData = {
      name: 'tcp.connection', kind: 'server', traceId: IDS.traceId, spanId: IDS.serverSpanId, parentSpanId: IDS.clientSpanId,
      startTime: at(us(200)), endTime: at(us(3300)),
      attributes: {
        'network.transport': 'tcp', 'network.type': 'ipv4', 'network.local.address': '10.0.0.2', 'network.local.port': 80,
        'network.peer.address': '10.0.0.1', 'network.peer.port': 40000, 'process.pid': 999, 'process.executable.name': 'nginx',
        'tcp.close.reason': 'fin', 'tcp.close.initiator': 'peer', 'tcp.handshake.duration': 0.000401, 'tcp.retransmits': 0,
        'tcp.rtt.min': 0.00038, 'tcp.rtt.avg': 0.0004, 'tcp.rtt.max': 0.00042, 'tcp.rtt.samples': 3, 'tcp.rtt.smoothed': 0.00041,
        'tcp.bytes.sent': 300, 'tcp.bytes.received': 100, 'tcp.segments.sent': 4, 'tcp.segments.received': 5,
        'tcpspan.netns': NETNS, 'tcpspan.socket.cookie': 202,
      },
      events: spanEvents(passiveCloseRecord), droppedEventsCount: 0, status: { code: 'unset' },
    };
    assert.deepEqual(toSpanData(passiveCloseRecord, off), want);
  });

  it('should mark a failed connection as an error with error.type and the tcpspan flags', () => {
    const rec: ConnectionRecord = record({
      cookie: 9, kind: 'unknown', localAddress: '10.0.0.1', localPort: 1, peerAddress: '10.0.0.2', peerPort: 2,
      startNs: ms(0), endNs: ms(3), handshakeNs: undefined, closeReason: 'reset_received', closeInitiator: 'peer',
      errno: 104, errorName: 'ECONNRESET', retransmits: 3, retransmitsFailed: 2, rtt: undefined, srttUs: undefined,
      bytesSent: undefined, bytesReceived: undefined, segmentsSent: undefined, segmentsReceived: undefined,
      openBeforeStart: true, kernelEventsLost: true, evicted: false, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16),
      events: [rstRx(ms(2), 'established')], droppedEvents: 7,
    });
    const want: SpanData = {
      name: 'tcp.connection', kind: 'internal', traceId: 'a'.repeat(32), spanId: 'b'.repeat(16),
      startTime: at(ms(0)), endTime: at(ms(3)),
      attributes: {
        'network.transport': 'tcp', 'network.type': 'ipv4', 'network.local.address': '10.0.0.1', 'network.local.port': 1,
        'network.peer.address': '10.0.0.2', 'network.peer.port': 2, 'error.type': 'ECONNRESET',
        'tcp.close.reason': 'reset_received', 'tcp.close.initiator': 'peer', 'tcp.retransmits': 3,
        'tcpspan.netns': NETNS, 'tcpspan.socket.cookie': 9, 'tcpspan.open_before_start': true,
        'tcpspan.kernel_events_lost': true, 'tcpspan.retransmits.failed': 2,
      },
      events: [{ name: 'tcp.reset_received', time: at(ms(2)), attributes: { 'network.connection.state': 'established' } }],
      droppedEventsCount: 7, status: { code: 'error', message: 'connection reset by peer (ECONNRESET)' },
    };
    assert.deepEqual(toSpanData(rec, off), want);
  });

  it('should mark an evicted connection incomplete, not an error', () => {
    const rec = record({
      cookie: 8, kind: 'client', family: 'ipv6', localAddress: '::1', localPort: 3, peerAddress: '::1', peerPort: 4,
      startNs: ms(0), endNs: ms(9), handshakeNs: 1e6, closeReason: 'incomplete', closeInitiator: undefined, evicted: true,
      rtt: undefined, srttUs: undefined, bytesSent: 0, bytesReceived: 0, segmentsSent: 1, segmentsReceived: 1,
      traceId: 'c'.repeat(32), spanId: 'd'.repeat(16), events: [],
    });
    assert.deepEqual(toSpanData(rec, off), {
      name: 'tcp.connection', kind: 'client', traceId: 'c'.repeat(32), spanId: 'd'.repeat(16),
      startTime: at(ms(0)), endTime: at(ms(9)),
      attributes: {
        'network.transport': 'tcp', 'network.type': 'ipv6', 'network.local.address': '::1', 'network.local.port': 3,
        'network.peer.address': '::1', 'network.peer.port': 4, 'tcp.close.reason': 'incomplete', 'tcp.handshake.duration': 0.001,
        'tcp.retransmits': 0, 'tcp.bytes.sent': 0, 'tcp.bytes.received': 0, 'tcp.segments.sent': 1, 'tcp.segments.received': 1,
        'tcpspan.netns': NETNS, 'tcpspan.socket.cookie': 8, 'tcpspan.evicted': true,
      },
      events: [], droppedEventsCount: 0, status: { code: 'unset' },
    } satisfies SpanData);
  });

  it('should convert Unix nanoseconds to HrTime exactly', () => {
    assert.deepEqual(toHrTime(epoch(us(3250))), [1_700_001_000, 3_250_000]);
  });
});

describe('semantic convention copies', () => {
  it('should match the incubating entry point of @opentelemetry/semantic-conventions', () => {
    const copied = Object.entries(sc).filter(([k]) => k.startsWith('ATTR_PROCESS_') || k.startsWith('ATTR_NETWORK_') || k.startsWith('NETWORK_') ||
      k.startsWith('ATTR_CONTAINER_') || k.startsWith('ATTR_K8S_'));
    assert.equal(copied.length, 16);
    assert.deepEqual(Object.fromEntries(copied), Object.fromEntries(copied.map(([k]) => [k, (incubating as Record<string, unknown>)[k]])));
  });
});

describe('event builder', () => {
  it('should lay addresses out as the decoder keeps them', () => {
    assert.deepEqual(addressWords('127.0.0.1'), [0x0100007f, 0, 0, 0]);
    assert.deepEqual(addressWords('::1'), [0, 0, 0, 0x01000000]);
    assert.deepEqual(addressWords('::ffff:10.0.0.1'), [0, 0, 0xffff0000, 0x0100000a]);
    assert.equal(T0, us(0));
  });

});

describe('Correlator checkpoints (checkpointMs)', () => {
  /** A correlator with 1 ms checkpoints over a simulated kernel whose lives `read` serves, as the lives map would. */
  function withCheckpoints() {
    const out: ConnectionRecord[] = [];
    const cps: CheckpointRecord[] = [];
    const c = createCorrelator({ ...OPTS, checkpointMs: 1 }, (r) => out.push(r), (cp) => cps.push(cp));
    const storage: SocketStorage = new Map();
    const step = (steps: KernelStep[]) => feed(c, simulateKernel(steps, storage));
    /** the kernel's current counters of a life, as tcp_probe keeps them */
    const counters = (cookie: number, g: Partial<KernelEvent>) => Object.assign(storage.get(cookie)!.rec, g);
    const read = (cookies: ReadonlyMap<number, unknown>, visit: (life: KernelEvent) => void) => {
      for (const [cookie, life] of storage) if (!life.closed && cookies.has(cookie)) visit({ ...life.rec, kind: 0, tsNs: 0 });
    };
    return { c, out, cps, step, counters, read };
  }

  it('should make one record per interval of an open end, whose deltas add up to its totals and to the final record\'s', () => {
    const { c, out, cps, step, counters, read } = withCheckpoints();
    step(activeClose.slice(0, 2)); // established at 500 µs
    assert.equal(c.checkpoint(us(900), read), 0, 'not yet an interval old');
    counters(101, { bytesAcked: 41, bytesReceived: 100, segsIn: 2, segsOut: 2, srttUs: 480, rttCount: 2, rttSumUs: 960 });
    assert.equal(c.checkpoint(us(1500), read), 1);
    assert.equal(c.checkpoint(us(1900), read), 0, 'the next one is due at 2 ms');
    counters(101, { bytesAcked: 91, bytesReceived: 250, segsIn: 3, segsOut: 3, srttUs: 450, rttCount: 3, rttSumUs: 1410 });
    assert.equal(c.checkpoint(us(2600), read), 1);
    step(activeClose.slice(2));

    const final = out[0]!;
    const { traceId, clientSpanId } = ids(CLIENT_ISN, SERVER_ISN);
    const tuple = { family: 'ipv4', localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80, netns: NETNS };
    const common = { cookie: 101, kind: 'client', ...tuple, state: 'established', handshakeNs: 500_000, traceId, parentSpanId: clientSpanId,
      pid: 1234, executableName: 'curl', cgroupId: undefined, containerId: undefined, podUid: undefined };
    const totals1 = { bytesSent: 40, bytesReceived: 100, segmentsSent: 2, segmentsReceived: 2, retransmits: 0, rttSamples: 2, rttSumUs: 960 };
    const totals2 = { bytesSent: 90, bytesReceived: 250, segmentsSent: 3, segmentsReceived: 3, retransmits: 0, rttSamples: 3, rttSumUs: 1410 };
    assert.deepEqual(cps, [
      { ...common, sequence: 1, startNs: us(0), endNs: us(1500), interval: totals1, totals: totals1, srttUs: 480, spanId: cps[0]!.spanId },
      { ...common, sequence: 2, startNs: us(1500), endNs: us(2600), totals: totals2, srttUs: 450, spanId: cps[1]!.spanId,
        interval: { bytesSent: 50, bytesReceived: 150, segmentsSent: 1, segmentsReceived: 1, retransmits: 0, rttSamples: 1, rttSumUs: 450 } },
    ]);
    assert.match(cps[0]!.spanId, /^[0-9a-f]{16}$/);
    assert.notEqual(cps[0]!.spanId, cps[1]!.spanId);
    // the final record as without checkpoints, plus the last checkpoint's totals
    assert.deepEqual(final, { ...activeCloseRecord, checkpointed: { count: 2, ...totals2 } });
    assert.equal(final.spanId, clientSpanId);

    const off = epochOffset((m) => m + 1.7e18);
    assert.deepEqual(toCheckpointSpanData(cps[1]!, off).attributes, {
      'network.transport': 'tcp', 'network.type': 'ipv4', 'network.local.address': '10.0.0.1', 'network.local.port': 40000,
      'network.peer.address': '10.0.0.2', 'network.peer.port': 80, 'network.connection.state': 'established',
      'tcpspan.checkpoint.sequence': 2, 'tcp.bytes.sent': 50, 'tcp.bytes.received': 150, 'tcp.segments.sent': 1,
      'tcp.segments.received': 1, 'tcp.retransmits': 0, 'tcp.rtt.samples': 1, 'tcp.bytes.sent.total': 90,
      'tcp.bytes.received.total': 250, 'tcp.segments.sent.total': 3, 'tcp.segments.received.total': 3, 'tcp.retransmits.total': 0,
      'tcpspan.netns': NETNS, 'tcpspan.socket.cookie': 101, 'tcp.rtt.avg': 0.00045, 'tcp.rtt.smoothed': 0.00045,
      'process.pid': 1234, 'process.executable.name': 'curl',
    });
    const span = toCheckpointSpanData(cps[1]!, off);
    assert.deepEqual({ name: span.name, kind: span.kind, traceId: span.traceId, parent: span.parentSpanId },
      { name: 'tcp.connection.checkpoint', kind: 'internal', traceId, parent: clientSpanId });
  });

  it('should keep the random ids of an end open before tcpspan started for its final span', () => {
    const { c, out, cps, step, read } = withCheckpoints();
    const e = new Endpoint({ cookie: 777, local: '10.0.0.7', lport: 5432, peer: '10.0.0.8', rport: 40777 });
    step([{ ...e.retransmit(us(0), S.ESTABLISHED, 0x18, 1, 0), kind: StepKind.Retransmit }]);
    assert.equal(c.checkpoint(us(1000), read), 1);
    assert.equal(c.checkpoint(us(2000), read), 1);
    c.flush(us(2500));
    assert.equal(out.length, 1);
    assert.deepEqual(cps.map((cp) => [cp.kind, cp.traceId, cp.parentSpanId, cp.totals.retransmits]),
      [['unknown', out[0]!.traceId, out[0]!.spanId, 1], ['unknown', out[0]!.traceId, out[0]!.spanId, 1]]);
    assert.equal(out[0]!.checkpointed?.count, 2);
  });

  it('should make none for an end not yet established, for a closed one, or with checkpointMs 0', () => {
    const { c, cps, step, read } = withCheckpoints();
    step(activeClose.slice(0, 1)); // SYN_SENT only: no shared trace id yet
    assert.equal(c.checkpoint(us(5000), read), 0);
    step(activeClose.slice(1));
    assert.equal(c.checkpoint(us(9000), read), 0);
    assert.deepEqual(cps, []);
    const none: CheckpointRecord[] = [];
    const off = createCorrelator({ ...OPTS, checkpointMs: 0 }, () => undefined, (cp) => none.push(cp));
    feed(off, simulateKernel(activeClose.slice(0, 2)));
    assert.equal(off.checkpoint(ms(60_000), read), 0);
    assert.deepEqual(none, []);
  });
});
