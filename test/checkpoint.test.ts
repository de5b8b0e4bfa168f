// Checkpoints of long-lived connections with the real kernel: `tcpspan run --checkpoint-ms 1000`
// while a loopback connection is held open for 3.5 intervals, exchanging known byte counts in each;
// spans and metrics at a real OTLP gRPC receiver.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric, type ReceivedSpan } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
// a loopback address of its own (all of 127/8 is loopback): the filter takes only this test's connections
const HOST = `127.78.${process.pid % 250}.1`;
const INTERVAL_MS = 1000;
// bytes the client sends in each interval and the server answers, then after the last checkpoint
const REQUEST = [1000, 2000, 3000, 4000];
const REPLY = [10, 20, 30, 40];
// when each exchange starts at the earliest, ms after connect: mid-interval; an exchange after the
// first also waits until the checkpoints before it have arrived, so a late checkpoint on a slow
// machine cannot take the next interval's bytes
const AT_MS = [500, 1500, 2500, 3200];
// how late a checkpoint may end after it was due (read every 50 ms; a slow machine is slower)
const LATE_MS = 600;
const HOLD_MS = 3500;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
const num = (s: ReceivedSpan, k: string) => Number(s.attributes[k]);

/** A server on HOST that answers each request with its reply (by request size) and closes after the peer. */
async function serve(): Promise<{ port: number; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => {
    sockets.push(s);
    s.on('error', () => undefined);
    let got = 0, answered = 0;
    s.on('data', (d) => {
      got += d.length;
      // answer each request once it is whole
      while (answered < REQUEST.length && got >= sum(REQUEST.slice(0, answered + 1))) s.write(Buffer.alloc(REPLY[answered++]!, 0x62));
    });
    s.on('end', () => s.end());
  });
  server.listen(0, HOST);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

/**
 * Connects, makes exchange i at AT_MS[i] (each waits for its whole reply), closes at `holdMs`; the
 * client's port. With `before`, exchange i > 0 also waits for `before(i, clientPort)`.
 */
async function heldConnection(port: number, holdMs: number, exchanges: number,
  before?: (i: number, clientPort: number) => Promise<void>): Promise<number> {
  const t0 = Date.now();
  const s = net.connect(port, HOST);
  await once(s, 'connect');
  let received = 0;
  s.on('data', (d) => { received += d.length; });
  for (let i = 0; i < exchanges; i++) {
    await sleep(Math.max(0, t0 + AT_MS[i]! - Date.now()));
    if (i > 0 && before !== undefined) await before(i, s.localPort!);
    s.write(Buffer.alloc(REQUEST[i]!, 0x61));
    while (received < sum(REPLY.slice(0, i + 1))) await sleep(5);
  }
  await sleep(Math.max(0, t0 + holdMs - Date.now()));
  const local = s.localPort!;
  s.end();
  await once(s, 'close');
  return local;
}

async function startRun(receiver: OtlpReceiver, checkpointMs: number, ...more: string[]): Promise<ReadyProcess> {
  return spawnUntilReady(process.execPath, [MAIN, 'run', '--addr', `${HOST}/32`, '--checkpoint-ms', String(checkpointMs), ...more], {
    ready: 'running:',
    env: { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRIC_EXPORT_INTERVAL: '500' },
  });
}

/** The sum of a counter's points in its last export, by an attribute. */
function lastCounterBy(metrics: ReceivedMetric[], name: string, attribute: string): Record<string, number> {
  const m = metrics.filter((x) => x.name === name).at(-1);
  assert.ok(m && m.type === 'sum', `no counter ${name} exported`);
  const out: Record<string, number> = {};
  for (const p of m.dataPoints) out[String(p.attributes[attribute])] = (out[String(p.attributes[attribute])] ?? 0) + p.value;
  return out;
}

describe('checkpoints of long-lived connections (tcpspan run --checkpoint-ms, real kernel)', function () {
  this.timeout(60_000);
  let receiver: OtlpReceiver | undefined;
  let run: ReadyProcess | undefined;
  let server: { port: number; close(): Promise<void> } | undefined;

  beforeEach(async () => {
    receiver = await startOtlpReceiver();
    server = await serve();
  });

  afterEach(async () => {
    if (run && run.child.exitCode === null) await run.stop();
    run = undefined;
    await server?.close();
    await receiver?.close();
  });

  it('should emit 3 checkpoints per end of a connection held 3.5 intervals, in its trace, with interval deltas adding up to the totals', async () => {
    run = await startRun(receiver!, INTERVAL_MS);
    assert.match(run.stderr(), /checkpoints of open connections every 1000 ms/);
    // exchange i follows checkpoint i of both ends (the receiver has them)
    const checkpointsIn = async (i: number, local: number): Promise<void> => {
      for (const end = Date.now() + 10_000; Date.now() < end; await sleep(20)) {
        const got = receiver!.spans().filter((x) => x.name === 'tcp.connection.checkpoint' && num(x, 'tcpspan.checkpoint.sequence') === i &&
          (x.attributes['network.local.port'] === local || x.attributes['network.peer.port'] === local));
        if (got.length === 2) return;
      }
      assert.fail(`checkpoint ${i} of both ends not exported within 10 s`);
    };
    const clientPort = await heldConnection(server!.port, HOLD_MS, REQUEST.length, checkpointsIn);
    const shortPort = await heldConnection(server!.port, 300, 0); // closes long before an interval
    await sleep(300);
    assert.equal(await run.stop(), 0, run.stderr());
    assert.match(run.stderr(), /stopped: \d+ kernel events, 4 spans, 6 checkpoints \(otlp 10\);.*spans dropped: none/);

    const spans = receiver!.spans();
    const ofConn = (local: number) => spans.filter((s) => s.attributes['network.local.port'] === local || s.attributes['network.peer.port'] === local);
    // the short connection: its two final spans and nothing else
    assert.deepEqual(ofConn(shortPort).map((s) => s.name).sort(), ['tcp.connection', 'tcp.connection']);

    const all = ofConn(clientPort);
    assert.equal(all.length, 8, all.map((s) => `${s.name} ${s.kindName}`).join(', '));
    assert.equal(new Set(all.map((s) => s.traceId)).size, 1, 'one trace');
    const finals = all.filter((s) => s.name === 'tcp.connection');
    const client = finals.find((s) => s.kindName === 'SPAN_KIND_CLIENT')!;
    const srv = finals.find((s) => s.kindName === 'SPAN_KIND_SERVER')!;
    assert.ok(client && srv, 'both final spans');
    // per end: what it sent and received in each interval, and after the last checkpoint
    const ends = [
      { end: client, sent: REQUEST, received: REPLY },
      { end: srv, sent: REPLY, received: REQUEST },
    ];
    for (const { end, sent, received } of ends) {
      const cps = all.filter((s) => s.parentSpanId === end.spanId && s.name === 'tcp.connection.checkpoint')
        .sort((a, b) => num(a, 'tcpspan.checkpoint.sequence') - num(b, 'tcpspan.checkpoint.sequence'));
      const who = end.kindName;
      assert.equal(cps.length, 3, `${who}: ${cps.length} checkpoints`);
      let prevEnd = end.startTimeUnixNano;
      const totals = { 'tcp.bytes.sent': 0, 'tcp.bytes.received': 0, 'tcp.segments.sent': 0, 'tcp.segments.received': 0, 'tcp.retransmits': 0 };
      cps.forEach((cp, i) => {
        assert.deepEqual({ kind: cp.kindName, seq: cp.attributes['tcpspan.checkpoint.sequence'], state: cp.attributes['network.connection.state'], status: cp.status.code },
          { kind: 'SPAN_KIND_INTERNAL', seq: i + 1, state: 'established', status: 0 }, `${who} checkpoint ${i + 1}`);
        // contiguous intervals from the end's start, each ending when due (k intervals after the
        // start) or a little after, when it was read
        assert.equal(cp.startTimeUnixNano, prevEnd, `${who} checkpoint ${i + 1} starts where the previous one ended`);
        const late = Number(cp.endTimeUnixNano - end.startTimeUnixNano) / 1e6 - (i + 1) * INTERVAL_MS;
        assert.ok(late >= -1 && late <= LATE_MS, `${who} checkpoint ${i + 1} ended ${late} ms after it was due`);
        prevEnd = cp.endTimeUnixNano;
        // this interval's exchange exactly, and the totals so far
        assert.deepEqual([num(cp, 'tcp.bytes.sent'), num(cp, 'tcp.bytes.received'), num(cp, 'tcp.retransmits')], [sent[i], received[i], 0],
          `${who} checkpoint ${i + 1}`);
        for (const k of Object.keys(totals) as (keyof typeof totals)[]) {
          totals[k] += num(cp, k);
          assert.equal(num(cp, `${k}.total`), totals[k], `${who} checkpoint ${i + 1}: ${k}.total is the sum of the intervals`);
        }
        assert.ok(num(cp, 'tcp.segments.received') > 0 && num(cp, 'tcp.rtt.samples') > 0, `${who} checkpoint ${i + 1} saw segments`);
        assert.ok(num(cp, 'tcp.rtt.avg') > 0 && num(cp, 'tcp.rtt.smoothed') > 0, `${who} checkpoint ${i + 1} has an RTT`);
      });
      assert.ok(cps[2]!.endTimeUnixNano <= end.endTimeUnixNano, `${who}: the last checkpoint ends before the end closes`);
      // the final span is as ever; it exceeds the last checkpoint's totals by what followed it
      assert.deepEqual([num(end, 'tcp.bytes.sent'), num(end, 'tcp.bytes.received')], [sum(sent), sum(received)], `${who} final`);
      assert.deepEqual([num(end, 'tcp.bytes.sent') - totals['tcp.bytes.sent'], num(end, 'tcp.bytes.received') - totals['tcp.bytes.received']],
        [sent[3], received[3]], `${who}: after the last checkpoint`);
      for (const k of ['tcp.segments.sent', 'tcp.segments.received'] as const) {
        assert.ok(num(end, k) > totals[k], `${who}: ${k} ${num(end, k)} > ${totals[k]} (the last exchange and the FINs)`);
      }
      assert.equal(end.attributes['tcp.close.reason'], 'fin');
      assert.equal(Object.keys(end.attributes).some((k) => k.endsWith('.total') || k.startsWith('tcpspan.checkpoint')), false, `${who}: final span unchanged`);
    }

    // metrics of open connections: bytes counted at the checkpoints, before the close; ages of open ends
    const metrics = receiver!.metrics();
    const closeNs = client.endTimeUnixNano;
    const before = metrics.filter((m) => m.name === 'tcp.connection.bytes' && m.type === 'sum' &&
      m.dataPoints.some((p) => p.timeUnixNano < closeNs && p.value > 0));
    assert.ok(before.length > 0, 'tcp.connection.bytes grew while the connection was open');
    const bytes = lastCounterBy(metrics, 'tcp.connection.bytes', 'network.io.direction');
    assert.deepEqual(bytes, { transmit: sum(REQUEST) + sum(REPLY), receive: sum(REQUEST) + sum(REPLY) });
    const ages = metrics.filter((m) => m.name === 'tcp.connection.open.age' && m.type === 'histogram')
      .flatMap((m) => (m.type === 'histogram' ? m.dataPoints : []));
    assert.ok(ages.some((p) => p.count >= 1 && (p.max ?? 0) >= 1 && p.timeUnixNano < closeNs),
      `an age of an open end over 1 s exported before the close: ${JSON.stringify(ages.map((p) => [p.count, p.max]))}`);
  });

  it('should leave out the checkpoints of a healthy connection its trace\'s ratio leaves out, counted as sampled out', async () => {
    run = await startRun(receiver!, INTERVAL_MS, '--sampling-ratio', '0');
    await heldConnection(server!.port, 2500, 3);
    await sleep(300);
    assert.equal(await run.stop(), 0, run.stderr());
    // 2 ends, 2 checkpoints each: none kept by the ratio 0, no rule holds (no retransmit, a fast handshake)
    assert.match(run.stderr(), /stopped: \d+ kernel events, 2 spans, 4 checkpoints, 6 sampled out \(otlp 0\);/);
    assert.deepEqual(receiver!.spans(), []);
    const bytes = lastCounterBy(receiver!.metrics(), 'tcp.connection.bytes', 'network.io.direction');
    const exchanged = sum(REQUEST.slice(0, 3)) + sum(REPLY.slice(0, 3));
    assert.deepEqual(bytes, { transmit: exchanged, receive: exchanged }, 'the metrics count what sampling left out');
  });

  it('should emit no checkpoint with --checkpoint-ms 0', async () => {
    run = await startRun(receiver!, 0);
    assert.doesNotMatch(run.stderr(), /checkpoints of open connections/);
    const clientPort = await heldConnection(server!.port, 1500, 2);
    await sleep(300);
    assert.equal(await run.stop(), 0, run.stderr());
    assert.match(run.stderr(), /stopped: \d+ kernel events, 2 spans \(otlp 2\);/);
    const spans = receiver!.spans().filter((s) => s.attributes['network.local.port'] === clientPort || s.attributes['network.peer.port'] === clientPort);
    assert.deepEqual(spans.map((s) => s.name), ['tcp.connection', 'tcp.connection']);
    const bytes = lastCounterBy(receiver!.metrics(), 'tcp.connection.bytes', 'network.io.direction');
    const exchanged = sum(REQUEST.slice(0, 2)) + sum(REPLY.slice(0, 2));
    assert.deepEqual(bytes, { transmit: exchanged, receive: exchanged }, 'counted at the close');
  });
});
