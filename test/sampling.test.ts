// Sampling with the real kernel: `tcpspan run --sampling-ratio 0.1` over healthy loopback
// connections, refused and reset ones, and retransmitting ones between two network namespaces
// with nftables loss; spans and metrics at a real OTLP gRPC receiver.
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import path from 'node:path';
import { rejectionThreshold } from '../src/pipeline/sampler.js';
import { createLab, destroyStaleLabs, type Lab, type TransferResult } from './support/netns-lab.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric, type ReceivedSpan } from './support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from './support/ready-process.js';

const MAIN = path.resolve(__dirname, '..', 'src', 'cli', 'main.js');
const RATIO = 0.1;
const HEALTHY = 400, REFUSED = 30, RESET = 30, LOSSY = 6;
const T = rejectionThreshold(RATIO);
// a loopback address of its own (all of 127/8 is loopback): the filter then takes only this test's
// connections, while other test runs on the machine use the same port numbers elsewhere
const HOST = `127.77.${process.pid % 250}.1`;

/** The specification's rule, with bigints: the trace id's low 56 bits reach the threshold. */
const ratioKeeps = (traceId: string): boolean => BigInt(`0x${traceId.slice(-14)}`) >= T;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A server on HOST: `onConnection` for each accepted socket. */
async function serve(onConnection: (s: net.Socket) => void): Promise<{ port: number; close(): Promise<void> }> {
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => { sockets.push(s); s.on('error', () => undefined); onConnection(s); });
  server.listen(0, HOST);
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((resolve) => { for (const s of sockets) s.destroy(); server.close(() => resolve()); }),
  };
}

async function healthyConnection(port: number): Promise<number> {
  const s = net.connect(port, HOST);
  await once(s, 'connect');
  const local = s.localPort!;
  s.write('hello');
  await once(s, 'data');
  s.end();
  await once(s, 'close');
  return local;
}

async function refusedConnection(port: number): Promise<void> {
  const s = net.connect(port, HOST);
  const [err] = (await once(s, 'error')) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNREFUSED');
}

/** The server resets the connection (SO_LINGER 0) at the first data: reset_sent there, reset_received here. */
async function resetConnection(port: number): Promise<void> {
  const s = net.connect(port, HOST);
  let code: string | undefined;
  s.on('error', (e: NodeJS.ErrnoException) => { code = e.code; });
  const closed = new Promise((resolve) => s.on('close', resolve)); // events.once would reject on the error
  await once(s, 'connect');
  s.write('x');
  await closed;
  assert.equal(code, 'ECONNRESET');
}

/** The sum of a counter's data points, in the last export of it (cumulative); by a grouping attribute. */
function counterBy(metrics: ReceivedMetric[], name: string, attribute: string): Record<string, number> {
  const m = metrics.filter((x) => x.name === name).at(-1);
  assert.ok(m && m.type === 'sum', `no counter ${name} exported`);
  const out: Record<string, number> = {};
  for (const p of m.dataPoints) {
    const k = String(p.attributes[attribute] ?? '');
    out[k] = (out[k] ?? 0) + Number(p.value);
  }
  return out;
}

const total = (r: Record<string, number>): number => Object.values(r).reduce((a, b) => a + b, 0);

describe('sampling (tcpspan run --sampling-ratio 0.1, real kernel)', function () {
  this.timeout(180_000);
  let lab: Lab | undefined;
  let receiver: OtlpReceiver | undefined;
  let run: ReadyProcess | undefined;
  const servers: { close(): Promise<void> }[] = [];

  before(async () => {
    await destroyStaleLabs('tsps');
    lab = await createLab('tsps');
  });

  after(async () => {
    if (run && run.child.exitCode === null) await run.stop();
    for (const s of servers) await s.close();
    await receiver?.close();
    await lab?.destroy();
  });

  it('should keep every refused, reset and retransmitting connection, 0.1 of the healthy ones with both ends agreeing, and count all in the metrics', async () => {
    receiver = await startOtlpReceiver();
    // answers 3 bytes to the first data, closes after the peer
    const healthy = await serve((s) => { s.once('data', () => s.write('abc')); s.on('end', () => s.end()); });
    const resetting = await serve((s) => s.once('data', () => s.resetAndDestroy()));
    const unused = await serve(() => undefined);
    const refusedPort = unused.port;
    await unused.close();
    servers.push(healthy, resetting);
    const lossyPort = 42000 + (process.pid % 1000);
    const addrs = [`${HOST}/32`, `10.199.${lab!.subnet}.0/24`].flatMap((a) => ['--addr', a]);
    run = await spawnUntilReady(process.execPath, [MAIN, 'run', ...addrs, '--sampling-ratio', String(RATIO)], {
      ready: 'running:',
      // the slow-handshake rule off (its own unit test has it): a loaded machine may take 200 ms for a
      // loopback handshake, and an end kept by that rule would stand alone, outside the ratio
      env: { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_BSP_SCHEDULE_DELAY: '100', OTEL_METRIC_EXPORT_INTERVAL: '500',
        TCPSPAN_SAMPLING_KEEP_SLOWER_THAN_MS: '0' },
    });
    assert.match(run.stderr(), /spans to otlp \(sampling: 0\.1 of healthy connections, every failure\)/);

    const healthyPorts: number[] = [];
    for (let i = 0; i < HEALTHY; i++) healthyPorts.push(await healthyConnection(healthy.port));
    for (let i = 0; i < REFUSED; i++) await refusedConnection(refusedPort);
    for (let i = 0; i < RESET; i++) await resetConnection(resetting.port);
    await lab!.dropRandom('b', 5);
    const transfers: TransferResult[] = [];
    for (let i = 0; i < LOSSY; i++) transfers.push(await lab!.transfer({ bytes: 256 << 10, port: lossyPort, from: 'a' }));
    await lab!.clearDrops('b');
    const expectedEnds = 2 * HEALTHY + REFUSED + 2 * RESET + 2 * LOSSY;
    // every end closed (the last lossy one may wait for a FIN's retransmit): the metrics say so
    const closedNow = () => {
      const metrics = receiver!.metrics();
      return metrics.some((m) => m.name === 'tcp.connections.closed') ? total(counterBy(metrics, 'tcp.connections.closed', '')) : 0;
    };
    for (const end = Date.now() + 15_000; closedNow() < expectedEnds && Date.now() < end;) await sleep(100);
    await sleep(300); // the last ends' trailing events
    assert.equal(await run.stop(), 0, run.stderr());

    const spans = receiver.spans();
    const metrics = receiver.metrics();
    const line = /stopped: \d+ kernel events, (\d+) spans, (\d+) sampled out \(otlp (\d+)\);.*spans dropped: (.*)$/m.exec(run.stderr());
    assert.ok(line, run.stderr());
    const [ends, sampledOut, exported, dropped] = [Number(line[1]), Number(line[2]), Number(line[3]), line[4]];

    // the metrics count every end, sampled out or not; the spans are what was kept, nothing lost
    const closed = counterBy(metrics, 'tcp.connections.closed', 'tcp.close.reason');
    assert.deepEqual(closed, { fin: 2 * HEALTHY + 2 * LOSSY, refused: REFUSED, reset_sent: RESET, reset_received: RESET });
    assert.deepEqual({ ends, exported, sampledOut, dropped }, { ends: expectedEnds, exported: spans.length, sampledOut: expectedEnds - spans.length, dropped: 'none' });
    assert.equal(total(counterBy(metrics, 'tcpspan.spans.sampled_out', '')), sampledOut);

    // every failure is kept: each failing end's span is there, and a rule kept it (th:0)
    const byReason = (r: string) => spans.filter((s) => s.attributes['tcp.close.reason'] === r);
    assert.deepEqual([byReason('refused').length, byReason('reset_sent').length, byReason('reset_received').length], [REFUSED, RESET, RESET]);
    for (const s of [...byReason('refused'), ...byReason('reset_sent'), ...byReason('reset_received')]) {
      assert.deepEqual({ status: s.status.code, traceState: s.traceState }, { status: 2, traceState: 'ot=th:0' });
    }
    // a reset shows on both ends: each reset connection is kept whole
    const resetTraces = new Map<string, ReceivedSpan[]>();
    for (const s of [...byReason('reset_sent'), ...byReason('reset_received')]) resetTraces.set(s.traceId, [...(resetTraces.get(s.traceId) ?? []), s]);
    assert.equal(resetTraces.size, RESET);
    for (const pair of resetTraces.values()) assert.deepEqual(pair.map((s) => s.kindName).sort(), ['SPAN_KIND_CLIENT', 'SPAN_KIND_SERVER']);
    // no end that retransmitted was left out: the kept spans hold every retransmit the metrics counted, per kind
    const retransByKind = counterBy(metrics, 'tcp.connection.retransmits', 'tcp.connection.kind');
    for (const kind of ['client', 'server']) {
      const inSpans = spans.filter((s) => s.kindName === `SPAN_KIND_${kind.toUpperCase()}`).reduce((n, s) => n + Number(s.attributes['tcp.retransmits']), 0);
      assert.equal(inSpans, retransByKind[kind] ?? 0, `${kind} retransmits: spans ${inSpans}, metrics ${retransByKind[kind]}`);
    }
    assert.ok((retransByKind['client'] ?? 0) > LOSSY, `the lossy transfers retransmitted (${JSON.stringify(retransByKind)})`);

    // each lossy connection: its sender end kept (it retransmitted); its receiver end kept by the
    // ratio exactly when the trace id says so, or else only by a rule of its own
    for (const t of transfers) {
      const client = spans.find((s) => s.kindName === 'SPAN_KIND_CLIENT' && s.attributes['network.local.port'] === t.clientPort && s.attributes['network.peer.port'] === lossyPort);
      assert.ok(client, `no span for the lossy connection from port ${t.clientPort}`);
      assert.ok(Number(client.attributes['tcp.retransmits']) > 0, `client ${t.clientPort}: ${client.attributes['tcp.retransmits']} retransmits`);
      assert.equal(client.traceState, 'ot=th:0');
      const server = spans.find((s) => s.kindName === 'SPAN_KIND_SERVER' && s.traceId === client.traceId);
      if (ratioKeeps(client.traceId)) assert.ok(server, `trace ${client.traceId}: the ratio keeps it, the server end is missing`);
      if (server && !ratioKeeps(client.traceId)) {
        assert.equal(server.traceState, 'ot=th:0');
        assert.ok(Number(server.attributes['tcp.retransmits']) > 0 || server.status.code === 2, `server end of ${client.traceId} kept without a rule`);
      }
    }

    // healthy connections: kept as pairs (both ends, one trace), by the ratio, at 0.1 within binomial bounds
    const traces = new Map<string, ReceivedSpan[]>();
    for (const s of spans) {
      const local = s.attributes['network.local.port'], peer = s.attributes['network.peer.port'];
      if (local !== healthy.port && peer !== healthy.port) continue;
      traces.set(s.traceId, [...(traces.get(s.traceId) ?? []), s]);
    }
    for (const [traceId, ends2] of traces) {
      assert.deepEqual(ends2.map((s) => s.kindName).sort(), ['SPAN_KIND_CLIENT', 'SPAN_KIND_SERVER'], `trace ${traceId}: both ends agree`);
      for (const s of ends2) {
        assert.deepEqual({ status: s.status.code, retransmits: s.attributes['tcp.retransmits'], reason: s.attributes['tcp.close.reason'], traceState: s.traceState },
          { status: 0, retransmits: 0, reason: 'fin', traceState: 'ot=th:e6666666666666' }, `trace ${traceId}`);
      }
      assert.ok(ratioKeeps(traceId), `trace ${traceId} kept below the threshold`);
      const clientPort = ends2.find((s) => s.kindName === 'SPAN_KIND_CLIENT')!.attributes['network.local.port'];
      assert.ok(healthyPorts.includes(clientPort as number));
    }
    const kept = traces.size, mean = HEALTHY * RATIO, sigma = Math.sqrt(HEALTHY * RATIO * (1 - RATIO));
    assert.ok(Math.abs(kept - mean) <= 4 * sigma, `${kept} of ${HEALTHY} healthy connections kept; expected ${mean} ± ${(4 * sigma).toFixed(1)} (4σ)`);
    // what was left out is exactly the healthy ends not kept, and the receivers' ends no rule kept
    const lossyServersKept = spans.filter((s) => s.kindName === 'SPAN_KIND_SERVER' && s.attributes['network.local.port'] === lossyPort).length;
    assert.equal(sampledOut, 2 * (HEALTHY - kept) + (LOSSY - lossyServersKept));
    console.log(`      ${kept} of ${HEALTHY} healthy connections kept (expected ${mean} ± ${(4 * sigma).toFixed(1)}); ` +
      `${lossyServersKept} of ${LOSSY} lossy receivers' ends kept; ${sampledOut} of ${ends} ends sampled out; retransmits ${JSON.stringify(retransByKind)}`);
  });
});
