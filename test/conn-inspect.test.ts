// The correlator with payload records (inspect.*): span links from traceparent headers, bounded
// and deduplicated, and protocol attributes from the first bytes, as whole records and spans.
import assert from 'node:assert/strict';
import { EventKind, Life, PayloadDir, PayloadWhat, TcpState as S, newKernelEvent, type KernelEvent } from '../src/decode/event.js';
import { createCorrelator } from '../src/correlate/correlator.js';
import type { ConnectionRecord } from '../src/correlate/connection-record.js';
import { epochOffset, toSpanData } from '../src/correlate/span-data.js';
import { Endpoint, feed, isn, simulateKernel, stats, us } from './support/event-builder.js';

const CLIENT = new Endpoint({ cookie: 101, local: '10.0.0.1', lport: 40000, peer: '10.0.0.2', rport: 80 });
const SERVER = new Endpoint({ cookie: 202, local: '10.0.0.2', lport: 80, peer: '10.0.0.1', rport: 40000 });

const clientLife = simulateKernel([
  CLIENT.state(us(0), S.CLOSE, S.SYN_SENT, stats(0, 0, 0, 0, 0)),
  CLIENT.state(us(500), S.SYN_SENT, S.ESTABLISHED, isn(1, 2), stats(1, 0, 1, 1, 500)),
  CLIENT.state(us(3000), S.ESTABLISHED, S.FIN_WAIT1, stats(101, 300, 3, 3, 450)),
  CLIENT.state(us(3100), S.FIN_WAIT1, S.FIN_WAIT2, stats(102, 300, 4, 4, 450)),
  CLIENT.state(us(3250), S.FIN_WAIT2, S.CLOSE, stats(102, 301, 5, 5, 450)),
]);
const serverLife = simulateKernel([
  SERVER.state(us(600), S.LISTEN, S.SYN_RECV, stats(0, 0, 0, 0, 0)),
  SERVER.state(us(601), S.SYN_RECV, S.ESTABLISHED, isn(2, 1), stats(0, 0, 1, 1, 400)),
  SERVER.state(us(3050), S.ESTABLISHED, S.CLOSE_WAIT, stats(300, 101, 4, 3, 400)),
  SERVER.state(us(3200), S.CLOSE_WAIT, S.LAST_ACK, stats(300, 101, 4, 4, 400)),
  SERVER.state(us(3300), S.LAST_ACK, S.CLOSE, stats(301, 101, 5, 4, 410)),
]);

/** A payload record of an end (the life's start as the kernel reports it: its first transition). */
function payload(life: KernelEvent, tsNs: number, dir: number, what: number, seq: number, text: string, over: Partial<KernelEvent> = {}): KernelEvent {
  const bytes = Buffer.from(text, 'latin1');
  return {
    ...newKernelEvent(), kind: EventKind.Payload, tsNs, cookie: life.cookie, family: life.family, lport: life.lport, rport: life.rport,
    laddr0: life.laddr0, raddr0: life.raddr0, netns: life.netns, state: S.ESTABLISHED,
    life: life.lport === 80 ? Life.Server : Life.Client, lifeStartNs: life.transNs[0]!,
    seq, payloadDir: dir, payloadWhat: what, payloadSegLen: bytes.length, payloadLen: bytes.length, payload: bytes, ...over,
  };
}

const tp = (n: number, flags = '01') => `00-${String(n).repeat(32).slice(0, 32)}-${String(n).repeat(16).slice(0, 16)}-${flags}`;
const request = (n: number) => `GET /orders/${n} HTTP/1.1\r\nHost: shop\r\ntraceparent: ${tp(n)}\r\n\r\n`;
const link = (n: number) => ({ traceId: String(n).repeat(32).slice(0, 32), spanId: String(n).repeat(16).slice(0, 16), flags: 1 });
const { Egress, Ingress } = PayloadDir;
const { First, Request } = PayloadWhat;

function run(records: KernelEvent[], maxLinksPerSpan = 32) {
  const out: ConnectionRecord[] = [];
  const c = createCorrelator({ maxConnections: 100, maxEventsPerSpan: 128, lingerMs: 20, maxPendingSynAcks: 16, maxLinksPerSpan }, (r) => out.push(r));
  feed(c, records);
  c.flush(us(10_000));
  return { out, dropped: c.stats().dropped };
}

describe('Correlator with payload records (inspect.*)', () => {
  it('should link each end to the requests it carried, in order, once per request (retransmits skipped), up to the bound', () => {
    const [cOpen, cClose] = clientLife, [sOpen, sClose] = serverLife;
    const { out, dropped } = run([
      cOpen!, sOpen!,
      payload(cOpen!, us(1000), Egress, First | Request, 1000, request(1)),
      payload(sOpen!, us(1010), Ingress, First | Request, 1000, request(1)),
      payload(sOpen!, us(1020), Egress, First, 5000, 'HTTP/1.1 200 OK\r\n\r\n'),
      payload(cOpen!, us(1100), Egress, Request, 1040, request(2)),
      payload(cOpen!, us(1200), Egress, Request, 1040, request(2)), // a retransmit of the same segment
      payload(cOpen!, us(1300), Egress, Request, 1080, request(3)),
      payload(cOpen!, us(1400), Egress, Request, 1120, 'GET / HTTP/1.1\r\nHost: shop\r\n\r\n'), // no traceparent: no link
      cClose!, sClose!,
    ], 2);
    const http = { 'network.protocol.name': 'http', 'network.protocol.version': '1.1', 'http.request.method': 'GET' };
    const client = out.find((r) => r.kind === 'client')!, server = out.find((r) => r.kind === 'server')!;
    assert.deepEqual({ links: client.links, dropped: client.droppedLinks, protocol: client.protocol }, { links: [link(1), link(2)], dropped: 1, protocol: http });
    assert.deepEqual({ links: server.links, dropped: server.droppedLinks, protocol: server.protocol }, { links: [link(1)], dropped: 0, protocol: http });
    assert.equal(dropped.payload_untracked, 0);

    // the span: protocol attributes beside the others, links with their dropped count
    const span = toSpanData(client, epochOffset((m) => m + 1.7e18));
    assert.deepEqual({ links: span.links, dropped: span.droppedLinksCount }, { links: [link(1), link(2)], dropped: 1 });
    assert.deepEqual(Object.fromEntries(Object.entries(span.attributes).filter(([k]) => k in http)), http);
  });

  it('should add nothing to an end without payload records: records and spans as before', () => {
    const { out } = run([...clientLife]);
    assert.ok(!('links' in out[0]!) && !('protocol' in out[0]!) && !('droppedLinks' in out[0]!));
    assert.ok(!('links' in toSpanData(out[0]!, epochOffset((m) => m))));
  });

  it('should take the server\'s first bytes when the client\'s say nothing (MySQL), and the client\'s first', () => {
    const [sOpen, sClose] = serverLife;
    const body = Buffer.concat([Buffer.from([10]), Buffer.from('8.0.36\0'), Buffer.alloc(40, 1)]);
    const greeting = Buffer.concat([Buffer.from([body.length, 0, 0, 0]), body]).toString('latin1');
    const { out } = run([sOpen!, payload(sOpen!, us(700), Egress, First, 1, greeting), payload(sOpen!, us(800), Ingress, First, 1, 'junk'), sClose!]);
    assert.deepEqual(out[0]!.protocol, { 'db.system.name': 'mysql', 'network.protocol.name': 'mysql', 'network.protocol.version': '10' });
  });

  it('should identify nothing for an end open before tcpspan started (its first bytes seen are mid-stream), but link its requests', () => {
    const { out } = run([payload(clientLife[0]!, us(1000), Egress, First | Request, 7, request(4), { life: Life.Midway, lifeStartNs: us(900) })]);
    assert.deepEqual({ kind: out[0]!.kind, links: out[0]!.links, protocol: out[0]!.protocol }, { kind: 'unknown', links: [link(4)], protocol: undefined });
  });

  it('should count a payload record of a socket with no life as payload_untracked', () => {
    const { out, dropped } = run([payload(clientLife[0]!, us(1000), Egress, Request, 7, request(5), { life: Life.None, lifeStartNs: 0 })]);
    assert.deepEqual({ spans: out.length, dropped: dropped.payload_untracked }, { spans: 0, dropped: 1 });
  });
});
