// The export stage end to end: SpanData -> SpanExportQueue -> tcpspan's OTLP gRPC exporter
// (its own protobuf encoder over the SDK's gRPC transport) -> a real gRPC receiver decoding
// the wire with the official protos.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ExportResultCode, type ExportResult, type InstrumentationScope } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toHrTime, type SpanData } from '../src/correlate/span-data.js';
import { createOtlpGrpcSpanExporter } from '../src/export/otlp-grpc-span-exporter.js';
import {
  createSpanExportQueue, type BatchExporter, type SpanDropReason, type SpanExportQueueOptions, type SpanExportQueueStats,
} from '../src/export/span-export-queue.js';
import { startOtlpReceiver, type OtlpReceiver, type OtlpReceiverOptions, type ReceivedSpan } from './support/otlp-receiver.js';

const RESOURCE_ATTRS = { 'service.name': 'tcpspan-test', 'host.name': 'lab-1', 'os.type': 'linux' };
const RESOURCE = resourceFromAttributes(RESOURCE_ATTRS);
const SCOPE: InstrumentationScope = { name: 'tcpspan', version: '0.1.0' };

const T0 = 1_763_000_000_123_456_789n; // past 2^53 ns: a Number would round it
const us = (n: number): bigint => BigInt(Math.round(n * 1000));
const TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CLIENT_SPAN = '00f067aa0ba902b7';
const SERVER_SPAN = 'b7ad6b7169203331';

const state = (at: bigint, s: string) => ({ name: 'tcp.state_change', time: toHrTime(at), attributes: { 'network.connection.state': s } });

/** A client connection to :443 closed with FINs, one data retransmit. */
const CLIENT: SpanData = {
  name: 'tcp.connection', kind: 'client', traceId: TRACE, spanId: CLIENT_SPAN,
  startTime: toHrTime(T0), endTime: toHrTime(T0 + us(48_211.5)),
  attributes: {
    'network.transport': 'tcp', 'network.type': 'ipv4',
    'network.local.address': '10.0.0.1', 'network.local.port': 40312,
    'network.peer.address': '10.0.0.2', 'network.peer.port': 443,
    'process.pid': 4242, 'process.executable.name': 'curl',
    'tcp.close.reason': 'fin', 'tcp.close.initiator': 'local', 'tcp.handshake.duration': 0.000118,
    'tcp.retransmits': 1, 'tcp.rtt.min': 0.000042, 'tcp.rtt.avg': 0.0000875, 'tcp.rtt.max': 0.000311,
    'tcp.rtt.samples': 12, 'tcp.rtt.smoothed': 0.000061, 'tcp.bytes.sent': 517, 'tcp.bytes.received': 4096,
    'tcp.segments.sent': 9, 'tcp.segments.received': 11, 'tcpspan.netns': 4026531840, 'tcpspan.socket.cookie': 81237,
  },
  events: [
    state(T0, 'syn_sent'),
    state(T0 + us(118), 'established'),
    {
      name: 'tcp.retransmit', time: toHrTime(T0 + us(20_001.25)),
      attributes: {
        'network.connection.state': 'established', 'tcp.retransmit.type': 'data',
        'tcp.retransmit.sent': true, 'tcp.retransmit.segments': 1,
      },
    },
    state(T0 + us(48_100), 'fin_wait_1'),
    state(T0 + us(48_150), 'fin_wait_2'),
    state(T0 + us(48_211.5), 'time_wait'),
  ],
  droppedEventsCount: 0,
  status: { code: 'unset' },
};

/** The server end of the same connection: its parent is the client span. */
const SERVER: SpanData = {
  name: 'tcp.connection', kind: 'server', traceId: TRACE, spanId: SERVER_SPAN, parentSpanId: CLIENT_SPAN,
  startTime: toHrTime(T0 + us(40)), endTime: toHrTime(T0 + us(48_260)),
  attributes: {
    'network.transport': 'tcp', 'network.type': 'ipv4',
    'network.local.address': '10.0.0.2', 'network.local.port': 443,
    'network.peer.address': '10.0.0.1', 'network.peer.port': 40312,
    'process.pid': 911, 'process.executable.name': 'nginx',
    'tcp.close.reason': 'fin', 'tcp.close.initiator': 'peer', 'tcp.handshake.duration': 0.000077,
    'tcp.retransmits': 0, 'tcpspan.netns': 4026532001, 'tcpspan.socket.cookie': 81238,
  },
  events: [state(T0 + us(40), 'syn_received'), state(T0 + us(117), 'established'), state(T0 + us(48_120), 'close_wait'),
    state(T0 + us(48_149), 'last_ack'), state(T0 + us(48_260), 'closed')],
  droppedEventsCount: 0,
  status: { code: 'unset' },
};

/** Seen only after tcpspan started, reset by the peer, events over the limit. */
const RESET: SpanData = {
  name: 'tcp.connection', kind: 'internal', traceId: 'a3ce929d0e0e47364bf92f3577b34da6', spanId: '0ba902b700f067aa',
  startTime: toHrTime(T0 - 5_000_000_000n), endTime: toHrTime(T0 + 1n),
  attributes: {
    'network.transport': 'tcp', 'network.type': 'ipv6',
    'network.local.address': '2001:db8::1', 'network.local.port': 5432,
    'network.peer.address': '2001:db8::7', 'network.peer.port': 51000,
    'error.type': 'ECONNRESET', 'tcp.close.reason': 'reset_received', 'tcp.retransmits': 0,
    'tcpspan.netns': 4026531840, 'tcpspan.socket.cookie': 9007199254740991, 'tcpspan.open_before_start': true,
  },
  events: [
    { name: 'tcp.reset_received', time: toHrTime(T0), attributes: { 'network.connection.state': 'established' } },
    { name: 'tcp.error', time: toHrTime(T0 + 1n), attributes: { 'error.type': 'ECONNRESET', 'tcp.error.code': 104 } },
  ],
  droppedEventsCount: 3,
  status: { code: 'error', message: 'connection reset by peer (ECONNRESET)' },
};

/** The three spans as the receiver must decode them, written out rather than derived. */
const COMMON = { resource: RESOURCE_ATTRS, scopeName: 'tcpspan', scopeVersion: '0.1.0', traceState: '', name: 'tcp.connection', links: [] };
const EXPECTED: ReceivedSpan[] = [
  {
    ...COMMON, traceId: TRACE, spanId: CLIENT_SPAN, parentSpanId: '',
    flags: 0x101, // sampled; "is remote" known (0x100), and false
    kind: 3, kindName: 'SPAN_KIND_CLIENT',
    startTimeUnixNano: 1_763_000_000_123_456_789n, endTimeUnixNano: 1_763_000_000_171_668_289n,
    attributes: CLIENT.attributes,
    events: [
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_123_456_789n, attributes: { 'network.connection.state': 'syn_sent' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_123_574_789n, attributes: { 'network.connection.state': 'established' } },
      {
        name: 'tcp.retransmit', timeUnixNano: 1_763_000_000_143_458_039n,
        attributes: {
          'network.connection.state': 'established', 'tcp.retransmit.type': 'data',
          'tcp.retransmit.sent': true, 'tcp.retransmit.segments': 1,
        },
      },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_556_789n, attributes: { 'network.connection.state': 'fin_wait_1' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_606_789n, attributes: { 'network.connection.state': 'fin_wait_2' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_668_289n, attributes: { 'network.connection.state': 'time_wait' } },
    ],
    status: { code: 0, message: '' },
  },
  {
    ...COMMON, traceId: TRACE, spanId: SERVER_SPAN, parentSpanId: CLIENT_SPAN,
    flags: 0x301, // sampled; the parent (the client's span) is remote
    kind: 2, kindName: 'SPAN_KIND_SERVER',
    startTimeUnixNano: 1_763_000_000_123_496_789n, endTimeUnixNano: 1_763_000_000_171_716_789n,
    attributes: SERVER.attributes,
    events: [
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_123_496_789n, attributes: { 'network.connection.state': 'syn_received' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_123_573_789n, attributes: { 'network.connection.state': 'established' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_576_789n, attributes: { 'network.connection.state': 'close_wait' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_605_789n, attributes: { 'network.connection.state': 'last_ack' } },
      { name: 'tcp.state_change', timeUnixNano: 1_763_000_000_171_716_789n, attributes: { 'network.connection.state': 'closed' } },
    ],
    status: { code: 0, message: '' },
  },
  {
    ...COMMON, traceId: 'a3ce929d0e0e47364bf92f3577b34da6', spanId: '0ba902b700f067aa', parentSpanId: '',
    flags: 0x101, kind: 1, kindName: 'SPAN_KIND_INTERNAL',
    startTimeUnixNano: 1_762_999_995_123_456_789n, endTimeUnixNano: 1_763_000_000_123_456_790n,
    attributes: RESET.attributes,
    events: [
      { name: 'tcp.reset_received', timeUnixNano: 1_763_000_000_123_456_789n, attributes: { 'network.connection.state': 'established' } },
      { name: 'tcp.error', timeUnixNano: 1_763_000_000_123_456_790n, attributes: { 'error.type': 'ECONNRESET', 'tcp.error.code': 104 } },
    ],
    status: { code: 2, message: 'connection reset by peer (ECONNRESET)' },
  },
];

/** n client spans with distinct ids and ports, for volume tests. */
function many(n: number, from = 0): SpanData[] {
  return Array.from({ length: n }, (_, k) => {
    const i = from + k;
    return {
      ...CLIENT,
      spanId: (0x1000_0000_0000_0000n + BigInt(i)).toString(16),
      startTime: toHrTime(T0 + BigInt(i) * 1000n),
      attributes: { ...CLIENT.attributes, 'network.local.port': 10_000 + (i % 50_000), 'tcpspan.socket.cookie': 1_000_000 + i },
    };
  });
}

/** tcpspan's OTLP gRPC exporter, encoding each batch's spans as it exports them. */
function otlp(url: string): BatchExporter<SpanData> {
  const e = createOtlpGrpcSpanExporter({ url, timeoutMillis: 10_000 }, RESOURCE, SCOPE);
  return { export: (spans, cb) => e.exporter.export(spans.map(e.encode), cb), shutdown: () => e.exporter.shutdown() };
}
const cookies = (spans: ReceivedSpan[]): number[] => spans.map((s) => s.attributes['tcpspan.socket.cookie'] as number);
const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

function drops(d: Partial<Record<SpanDropReason, number>> = {}): Record<SpanDropReason, number> {
  return { queue_full: 0, export_failed: 0, shutdown_deadline: 0, shutdown_unconfirmed: 0, spool_full: 0, spool_corrupt: 0, ...d };
}

const BASE: SpanExportQueueOptions = {
  maxQueueSize: 1000, maxExportBatchSize: 100, scheduledDelayMs: 20, exportTimeoutMs: 5000,
  maxRetries: 5, retryInitialDelayMs: 20,
};

/** Wraps an exporter to count concurrent export calls and shutdowns. */
function watched(inner: BatchExporter<SpanData>) {
  const w = {
    calls: 0, maxConcurrent: 0, shutdowns: 0, sizes: [] as number[],
    exporter: {
      export(spans: SpanData[], cb: (r: ExportResult) => void): void {
        w.calls++; w.sizes.push(spans.length);
        w.maxConcurrent = Math.max(w.maxConcurrent, ++concurrent);
        inner.export(spans, (r) => { concurrent--; cb(r); });
      },
      shutdown(): Promise<void> { w.shutdowns++; return inner.shutdown(); },
    } satisfies BatchExporter<SpanData>,
  };
  let concurrent = 0;
  return w;
}

async function until(cond: () => boolean, timeoutMs = 5000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('until: condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

describe('SpanExportQueue', () => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  async function receiver(opts: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
    const r = await startOtlpReceiver(opts);
    cleanups.push(() => r.close());
    return r;
  }

  function queue(exporter: BatchExporter<SpanData>, opts: Partial<SpanExportQueueOptions> = {}) {
    const log: string[] = [];
    const dropped: [number, SpanDropReason][] = [];
    let exported = 0;
    const q = createSpanExportQueue(exporter, {
      ...BASE, ...opts,
      log: (m) => log.push(m), onDropped: (n, r) => dropped.push([n, r]), onExported: (n) => { exported += n; },
    });
    cleanups.push(() => q.shutdown(1000));
    return { q, log, dropped, exported: () => exported };
  }

  function stats(s: Partial<SpanExportQueueStats>): SpanExportQueueStats {
    return { queued: 0, exported: 0, dropped: drops(), exportCalls: 0, failedCalls: 0, retries: 0, inFlight: 0, heldBytes: 0, ...s };
  }

  describe('export over OTLP gRPC', () => {
    it('should deliver connection spans exactly as given', async () => {
      const r = await receiver();
      const { q, exported } = queue(otlp(r.endpoint));

      for (const d of [CLIENT, SERVER, RESET]) assert.equal(q.add(d), true);
      await q.forceFlush(5000);

      assert.deepStrictEqual(await r.waitForSpans(3), EXPECTED);
      assert.deepStrictEqual(q.stats(), stats({ exported: 3, exportCalls: 1 }));
      assert.equal(exported(), 3);
      assert.deepStrictEqual(r.requests, { trace: 1, metrics: 0, logs: 0, rejected: 0 });
    });

    it('should send full batches in order with one export in flight', async () => {
      const r = await receiver({ delayMs: 30 });
      const w = watched(otlp(r.endpoint));
      const { q } = queue(w.exporter, { maxExportBatchSize: 100, scheduledDelayMs: 60_000 });

      for (const d of many(450)) q.add(d);
      // four full batches go without waiting for scheduledDelayMs (one minute)
      const got = await r.waitForSpans(400);
      assert.deepStrictEqual(cookies(got), range(1_000_000, 400));
      await until(() => q.stats().exported === 400); // the receiver stores before the client hears back
      assert.deepStrictEqual(q.stats(), stats({ queued: 50, exported: 400, exportCalls: 4 }));

      await q.forceFlush(5000); // the partial batch goes at once on a flush
      assert.deepStrictEqual(cookies(r.spans()), range(1_000_000, 450));
      assert.deepStrictEqual(w.sizes, [100, 100, 100, 100, 50]);
      assert.equal(w.maxConcurrent, 1);
    });

    it('should export a partial batch after scheduledDelayMs', async () => {
      const r = await receiver();
      const { q } = queue(otlp(r.endpoint), { scheduledDelayMs: 50 });
      const t0 = Date.now();
      q.add(CLIENT);
      await r.waitForSpans(1);
      assert.ok(Date.now() - t0 >= 45, `exported after ${Date.now() - t0} ms`);
    });
  });

  describe('retries', () => {
    it('should retry batches the collector refused with UNAVAILABLE and deliver every span once', async () => {
      const r = await receiver({ failFirst: 3, failWith: grpc.status.UNAVAILABLE });
      const { q, log, dropped } = queue(otlp(r.endpoint), { maxExportBatchSize: 10 });

      for (const d of many(25)) q.add(d);
      await q.forceFlush(10_000);

      assert.deepStrictEqual(cookies(await r.waitForSpans(25)), range(1_000_000, 25));
      assert.deepStrictEqual(q.stats(), stats({ exported: 25, exportCalls: 6, failedCalls: 3, retries: 3 }));
      assert.deepStrictEqual(dropped, []);
      assert.deepStrictEqual(r.requests, { trace: 6, metrics: 0, logs: 0, rejected: 3 });
      assert.equal(log.length, 2, log.join('\n'));
      assert.match(log[0]!, /export failed .*UNAVAILABLE.*retrying/);
      assert.match(log[1]!, /recovered after 3 failed call/);
    });

    it('should say it is failing from the first failed call until a call succeeds (readiness)', async () => {
      const r = await receiver({ failFirst: 2, failWith: grpc.status.UNAVAILABLE });
      const { q } = queue(otlp(r.endpoint), { retryInitialDelayMs: 100 });
      assert.equal(q.failing(), undefined, 'no call yet');
      for (const d of many(5)) q.add(d);
      await until(() => q.stats().failedCalls === 1);
      assert.match(String(q.failing()), /UNAVAILABLE/);
      await q.forceFlush(10_000);
      assert.equal(q.stats().exported, 5);
      assert.equal(q.failing(), undefined, 'recovered');
    });

    it('should keep accepting spans while a batch waits for its retry', async () => {
      const r = await receiver({ failFirst: 2 });
      const { q } = queue(otlp(r.endpoint), { retryInitialDelayMs: 200, maxExportBatchSize: 10 });

      for (const d of many(10)) q.add(d);
      await until(() => q.stats().failedCalls === 1);
      for (const d of many(30, 10)) assert.equal(q.add(d), true);
      assert.deepStrictEqual(q.stats(), stats({ queued: 30, inFlight: 10, exportCalls: 1, failedCalls: 1 }));

      await q.forceFlush(10_000);
      assert.deepStrictEqual(cookies(r.spans()), range(1_000_000, 40));
      assert.deepStrictEqual(q.stats(), stats({ exported: 40, exportCalls: 6, failedCalls: 2, retries: 2 }));
    });

    it('should count spans as export_failed after maxRetries when the collector is down', async () => {
      const r = await receiver();
      const endpoint = r.endpoint;
      await r.close(); // nothing listens there any more
      const { q, log, dropped } = queue(otlp(endpoint),
        { maxRetries: 2, retryInitialDelayMs: 10, maxExportBatchSize: 4 });

      for (const d of many(6)) q.add(d);
      await q.forceFlush(10_000);

      assert.deepStrictEqual(q.stats(),
        stats({ dropped: drops({ export_failed: 6 }), exportCalls: 6, failedCalls: 6, retries: 4 }));
      assert.deepStrictEqual(dropped, [[4, 'export_failed'], [2, 'export_failed']]);
      // one line when exports start failing, one when spans start being dropped: not one per batch
      assert.equal(log.length, 2, log.join('\n'));
      assert.match(log[0]!, /export failed .*UNAVAILABLE/);
      assert.match(log[1]!, /dropping spans \(export_failed\): a batch failed 3 time\(s\)/);
    });

    it('should not retry a batch the collector rejected as invalid', async () => {
      const r = await receiver({ failFirst: 1, failWith: grpc.status.INVALID_ARGUMENT });
      const { q, dropped } = queue(otlp(r.endpoint), { maxExportBatchSize: 5 });

      for (const d of many(8)) q.add(d);
      await q.forceFlush(5000);

      assert.deepStrictEqual(cookies(r.spans()), range(1_000_005, 3));
      assert.deepStrictEqual(q.stats(),
        stats({ exported: 3, dropped: drops({ export_failed: 5 }), exportCalls: 2, failedCalls: 1 }));
      assert.deepStrictEqual(dropped, [[5, 'export_failed']]);
    });
  });

  describe('bounds', () => {
    it('should refuse and count queue_full beyond maxQueueSize, logging once per burst', async () => {
      const r = await receiver();
      const { q, log, dropped } = queue(otlp(r.endpoint), { maxQueueSize: 50, maxExportBatchSize: 20 });

      const accepted = many(57).map((d) => q.add(d));
      assert.deepStrictEqual(accepted, [...Array(50).fill(true), ...Array(7).fill(false)]);
      assert.deepStrictEqual(q.stats(), stats({ queued: 50, dropped: drops({ queue_full: 7 }) }));
      assert.deepStrictEqual(dropped, Array(7).fill([1, 'queue_full']));
      assert.deepStrictEqual(log, ['dropping spans (queue_full): maxQueueSize (50) reached']);

      await q.forceFlush(5000);
      assert.equal(q.add(RESET), true); // room again: the burst ends
      assert.deepStrictEqual(log.slice(1), ['dropped 7 span(s) (queue_full)']);
      await q.forceFlush(5000);
      assert.deepStrictEqual(cookies(r.spans()).slice(0, 50), range(1_000_000, 50));
      assert.equal(r.spans().length, 51);
    });

    it('should count the batch waiting for a retry against maxQueueSize', async () => {
      const r = await receiver({ failFirst: 1 });
      const { q } = queue(otlp(r.endpoint),
        { maxQueueSize: 20, maxExportBatchSize: 10, retryInitialDelayMs: 300 });

      for (const d of many(10)) q.add(d);
      await until(() => q.stats().failedCalls === 1);
      // the batch waiting for its retry leaves room for exactly one more batch: not saturated yet
      assert.equal(q.saturated(), false);
      for (const d of many(1, 100)) q.add(d);
      assert.equal(q.saturated(), true, 'no room for a whole batch more: the producer should hold back');
      const accepted = many(11, 10).map((d) => q.add(d));
      assert.deepStrictEqual(accepted, [...Array(9).fill(true), false, false]);
      assert.deepStrictEqual(q.stats(),
        stats({ queued: 10, inFlight: 10, dropped: drops({ queue_full: 2 }), exportCalls: 1, failedCalls: 1 }));
    });

    it('should never throw from add, even when the exporter throws', async () => {
      const thrower: BatchExporter<SpanData> = { export() { throw new Error('boom'); }, shutdown: async () => undefined };
      const { q } = queue(thrower, { maxRetries: 1, retryInitialDelayMs: 5 });
      for (const d of many(3)) assert.equal(q.add(d), true);
      await q.forceFlush(2000);
      assert.deepStrictEqual(q.stats(), stats({ dropped: drops({ export_failed: 3 }), exportCalls: 2, failedCalls: 2, retries: 1 }));
    });
  });

  describe('export timeout', () => {
    it('should count an export whose callback never comes as failed and retry it', async () => {
      let calls = 0;
      const got: SpanData[] = [];
      const stalls: BatchExporter<SpanData> = {
        export(spans, cb) { if (calls++ > 0) { got.push(...spans); cb({ code: ExportResultCode.SUCCESS }); } },
        shutdown: async () => undefined,
      };
      const { q, log } = queue(stalls, { exportTimeoutMs: 50, retryInitialDelayMs: 5 });
      q.add(CLIENT);
      await q.forceFlush(2000);
      assert.deepStrictEqual(got.map((s) => s.spanId), [CLIENT_SPAN]);
      assert.deepStrictEqual(q.stats(), stats({ exported: 1, exportCalls: 2, failedCalls: 1, retries: 1 }));
      assert.match(log[0]!, /export timed out after 50 ms/);
    });
  });

  describe('shutdown', () => {
    it('should flush what is queued, shut the exporter down once, and be idempotent', async () => {
      const r = await receiver();
      const w = watched(otlp(r.endpoint));
      const { q, dropped } = queue(w.exporter, { scheduledDelayMs: 60_000 });

      for (const d of many(130)) q.add(d);
      const first = q.shutdown(5000);
      const second = q.shutdown(0);
      await Promise.all([first, second]);
      await q.shutdown(5000);

      assert.deepStrictEqual(cookies(r.spans()), range(1_000_000, 130));
      assert.equal(w.shutdowns, 1);
      assert.equal(q.add(CLIENT), false); // intake is stopped
      assert.deepStrictEqual(q.stats(), stats({ exported: 130, exportCalls: 2, dropped: drops({ queue_full: 1 }) }));
      assert.deepStrictEqual(dropped, [[1, 'queue_full']]);
    });

    it('should count what it could not deliver by the deadline as shutdown_deadline', async () => {
      const r = await receiver();
      const endpoint = r.endpoint;
      await r.close(); // collector down
      const w = watched(otlp(endpoint));
      const { q, log, dropped } = queue(w.exporter, { maxRetries: 10, retryInitialDelayMs: 50, maxExportBatchSize: 4 });

      for (const d of many(10)) q.add(d);
      const t0 = Date.now();
      await q.shutdown(1000);
      const took = Date.now() - t0;

      // the deadline and a little (a slow machine's event loop), not the 10 retries' backoff
      assert.ok(took < 2000, `shutdown took ${took} ms`);
      const s = q.stats();
      assert.equal(s.dropped.shutdown_deadline, 10);
      assert.deepStrictEqual(s.dropped, drops({ shutdown_deadline: 10 }));
      assert.deepStrictEqual(dropped, [[10, 'shutdown_deadline']]);
      assert.ok(s.retries >= 1, `retries ${s.retries}`);
      assert.equal(s.queued + s.inFlight, 0);
      assert.equal(w.shutdowns, 1);
      assert.ok(log.some((m) => m === 'dropped 10 span(s) (shutdown_deadline)'), log.join('\n'));
    });

    it('should count a batch whose call is out at the deadline as shutdown_unconfirmed, and the rest as shutdown_deadline', async () => {
      // a collector that answers after the deadline: the first batch arrives, unconfirmed; the rest were never sent
      const r = await receiver({ delayMs: 5000 });
      const w = watched(otlp(r.endpoint));
      const { q, dropped } = queue(w.exporter, { maxExportBatchSize: 4 });
      for (const d of many(10)) q.add(d);
      await until(() => w.calls === 1); // the first call goes out
      await new Promise((res) => setTimeout(res, 100));
      const t0 = Date.now();
      await q.shutdown(500);
      assert.ok(Date.now() - t0 < 2000, `shutdown took ${Date.now() - t0} ms`);
      assert.deepStrictEqual(q.stats().dropped, drops({ shutdown_unconfirmed: 4, shutdown_deadline: 6 }));
      assert.deepStrictEqual(dropped.sort(), [[4, 'shutdown_unconfirmed'], [6, 'shutdown_deadline']].sort());
      await r.waitForSpans(4, 15_000); // it did arrive: which is why it is not called undelivered
      await r.close();
    });
  });
});
