// Drives the test OTLP receiver with the real OpenTelemetry gRPC exporters the
// project ships with, so the receiver is known to decode what they really send
// before other tests lean on it.
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ROOT_CONTEXT, SpanKind, SpanStatusCode, ValueType, trace } from '@opentelemetry/api';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPMetricExporter } from '@opentelemetry/exporter-metrics-otlp-grpc';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { InMemorySpanExporter, SimpleSpanProcessor, TracerProvider, type ReadableSpan } from '@opentelemetry/sdk-trace';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedMetric, type ReceivedSpan } from './support/otlp-receiver.js';

const RESOURCE = { 'service.name': 'tcpspan-test', 'host.name': 'lab-host', 'service.instance.id': 7 };
const SCOPE = { name: 'tcpspan-receiver-test', version: '1.2.3' };

/** What a test started, shut down after it in reverse order (receiver last), even when it failed. */
const cleanups: (() => Promise<unknown>)[] = [];

async function receiver(opts?: Parameters<typeof startOtlpReceiver>[0]): Promise<OtlpReceiver> {
  const r = await startOtlpReceiver(opts);
  cleanups.push(() => r.close());
  return r;
}

function tracerProvider(exporter: OTLPTraceExporter | InMemorySpanExporter): TracerProvider {
  const provider = new TracerProvider({
    resource: resourceFromAttributes(RESOURCE),
    spanProcessors: [new SimpleSpanProcessor({ exporter })],
  });
  cleanups.push(() => provider.shutdown());
  return provider;
}

/** The exporter's own callback result, which SimpleSpanProcessor would swallow. */
function exportSpans(exporter: OTLPTraceExporter, spans: ReadableSpan[]): Promise<ExportResult> {
  return new Promise((resolve) => exporter.export(spans, resolve));
}

/** One finished span, made without any network so it can be handed to an exporter by hand. */
function oneReadableSpan(name: string): ReadableSpan[] {
  const memory = new InMemorySpanExporter();
  tracerProvider(memory).getTracer(SCOPE.name).startSpan(name).end();
  return memory.getFinishedSpans();
}

function byName(spans: ReceivedSpan[], name: string): ReceivedSpan {
  const span = spans.find((s) => s.name === name);
  assert.ok(span, `no span named ${name} among [${spans.map((s) => s.name).join(', ')}]`);
  return span;
}

/** Drops the wall-clock timestamps of every data point after checking they are sane. */
function withoutPointTimes(m: ReceivedMetric): unknown {
  return {
    ...m,
    dataPoints: m.dataPoints.map((p) => {
      const { startTimeUnixNano, timeUnixNano, ...rest } = p as { startTimeUnixNano: bigint; timeUnixNano: bigint };
      assert.equal(typeof timeUnixNano, 'bigint');
      assert.ok(startTimeUnixNano > 0n && startTimeUnixNano <= timeUnixNano, `${startTimeUnixNano} .. ${timeUnixNano}`);
      return rest;
    }),
  };
}

describe('OTLP receiver', () => {
  afterEach(async () => {
    while (cleanups.length > 0) await cleanups.pop()?.();
  });

  it('should decode spans from the real OTLP gRPC trace exporter exactly', async () => {
    const r = await receiver();
    const provider = tracerProvider(new OTLPTraceExporter({ url: r.endpoint }));
    const tracer = provider.getTracer(SCOPE.name, SCOPE.version);

    // Explicit HrTimes so the nanosecond values can be asserted exactly: they
    // are past 2^53, so this also proves no precision is lost on the way.
    const conn = tracer.startSpan('tcp.connection', {
      kind: SpanKind.SERVER,
      startTime: [1_700_000_000, 123_456_789],
      attributes: {
        'network.peer.address': '10.0.0.2', 'network.peer.port': 443, 'tcp.rtt.ratio': 0.25,
        'tcp.reset': true, 'tcp.bytes.acked': 2 ** 40, 'tcp.flags': ['SYN', 'ACK'], 'tcp.ports': [80, 443],
      },
    });
    conn.addEvent('tcp.state_change', { 'tcp.state.old': 'SYN_RECV', 'tcp.state.new': 'ESTABLISHED' },
      [1_700_000_000, 223_456_789]);
    conn.setStatus({ code: SpanStatusCode.ERROR, message: 'connection reset by peer' });
    const handshake = tracer.startSpan('tcp.handshake',
      { kind: SpanKind.CLIENT, startTime: [1_700_000_000, 123_456_789], attributes: { 'tcp.syn.retransmits': 0 } },
      trace.setSpan(ROOT_CONTEXT, conn));
    handshake.end([1_700_000_000, 150_000_000]);
    conn.end([1_700_000_001, 5]);
    await provider.forceFlush();

    const spans = await r.waitForSpans(2, 5000);
    assert.equal(spans.length, 2);
    const ids = conn.spanContext();
    assert.deepStrictEqual(byName(spans, 'tcp.connection'), {
      resource: RESOURCE, scopeName: SCOPE.name, scopeVersion: SCOPE.version,
      traceId: ids.traceId, spanId: ids.spanId, parentSpanId: '', traceState: '',
      flags: 0x101, // sampled, and "is remote" known (0x100) to be false
      name: 'tcp.connection', kind: 2, kindName: 'SPAN_KIND_SERVER',
      startTimeUnixNano: 1_700_000_000_123_456_789n, endTimeUnixNano: 1_700_000_001_000_000_005n,
      attributes: {
        'network.peer.address': '10.0.0.2', 'network.peer.port': 443, 'tcp.rtt.ratio': 0.25,
        'tcp.reset': true, 'tcp.bytes.acked': 2 ** 40, 'tcp.flags': ['SYN', 'ACK'], 'tcp.ports': [80, 443],
      },
      events: [{
        name: 'tcp.state_change', timeUnixNano: 1_700_000_000_223_456_789n,
        attributes: { 'tcp.state.old': 'SYN_RECV', 'tcp.state.new': 'ESTABLISHED' },
      }],
      links: [],
      status: { code: 2, message: 'connection reset by peer' },
    } satisfies ReceivedSpan);
    assert.deepStrictEqual(byName(spans, 'tcp.handshake'), {
      resource: RESOURCE, scopeName: SCOPE.name, scopeVersion: SCOPE.version,
      traceId: ids.traceId, spanId: handshake.spanContext().spanId, parentSpanId: ids.spanId, traceState: '',
      flags: 0x101, name: 'tcp.handshake', kind: 3, kindName: 'SPAN_KIND_CLIENT',
      startTimeUnixNano: 1_700_000_000_123_456_789n, endTimeUnixNano: 1_700_000_000_150_000_000n,
      attributes: { 'tcp.syn.retransmits': 0 }, events: [], links: [], status: { code: 0, message: '' },
    } satisfies ReceivedSpan);
    assert.deepStrictEqual(r.requests, { trace: 2, metrics: 0, logs: 0, rejected: 0 });
  });

  it('should decode a counter and a histogram from the real OTLP gRPC metric exporter exactly', async () => {
    const r = await receiver();
    const exporter = new OTLPMetricExporter({ url: r.endpoint, temporalityPreference: AggregationTemporality.CUMULATIVE });
    const meterProvider = new MeterProvider({
      resource: resourceFromAttributes(RESOURCE),
      // A long interval so only the explicit forceFlush below exports.
      readers: [new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 })],
    });
    cleanups.push(() => meterProvider.shutdown());
    const meter = meterProvider.getMeter(SCOPE.name, SCOPE.version);

    const counter = meter.createCounter('tcpspan.connections',
      { description: 'Connections seen', unit: '{connection}', valueType: ValueType.INT });
    counter.add(3, { 'network.transport': 'tcp' });
    counter.add(4, { 'network.transport': 'tcp' });
    counter.add(1, { 'network.transport': 'udp' });
    const duration = meter.createHistogram('tcpspan.connection.duration',
      { description: 'Connection lifetime', unit: 'ms', advice: { explicitBucketBoundaries: [10, 100, 1000] } });
    for (const ms of [5, 50, 2000]) duration.record(ms, { 'tcp.state': 'CLOSED' });
    await meterProvider.forceFlush();

    const base = { resource: RESOURCE, scopeName: SCOPE.name, scopeVersion: SCOPE.version };
    const connections = await r.waitForMetric('tcpspan.connections', 5000);
    const points = [
      { attributes: { 'network.transport': 'tcp' }, value: 7, valueType: 'int' },
      { attributes: { 'network.transport': 'udp' }, value: 1, valueType: 'int' },
    ];
    assert.deepStrictEqual(withoutPointTimes(connections), {
      ...base, name: 'tcpspan.connections', description: 'Connections seen', unit: '{connection}',
      type: 'sum', isMonotonic: true, aggregationTemporality: 2, dataPoints: points,
    });
    assert.deepStrictEqual(withoutPointTimes(await r.waitForMetric('tcpspan.connection.duration', 5000)), {
      ...base, name: 'tcpspan.connection.duration', description: 'Connection lifetime', unit: 'ms',
      type: 'histogram', aggregationTemporality: 2,
      dataPoints: [{
        attributes: { 'tcp.state': 'CLOSED' }, count: 3, sum: 2055, min: 5, max: 2000,
        bucketCounts: [1, 1, 0, 1], explicitBounds: [10, 100, 1000],
      }],
    });
    assert.equal(r.metrics().length, 2);
    assert.deepStrictEqual(r.requests, { trace: 0, metrics: 1, logs: 0, rejected: 0 });
  });

  it('should reject the first failFirst export calls with the given gRPC status', async () => {
    const r = await receiver({ failFirst: 1, failWith: grpc.status.UNAVAILABLE });
    const exporter = new OTLPTraceExporter({ url: r.endpoint });
    cleanups.push(() => exporter.shutdown());

    const first = await exportSpans(exporter, oneReadableSpan('while-down'));
    assert.equal(first.code, ExportResultCode.FAILED);
    assert.equal((first.error as { code?: number } | undefined)?.code, grpc.status.UNAVAILABLE);
    // The 0.301 gRPC exporter does not retry by itself: the one call was all it made.
    assert.deepStrictEqual(r.requests, { trace: 1, metrics: 0, logs: 0, rejected: 1 });
    assert.deepStrictEqual(r.spans(), []);

    const second = await exportSpans(exporter, oneReadableSpan('after-recovery'));
    assert.equal(second.code, ExportResultCode.SUCCESS);
    assert.deepStrictEqual(r.spans().map((s) => s.name), ['after-recovery']);
    assert.deepStrictEqual(r.requests, { trace: 2, metrics: 0, logs: 0, rejected: 1 });
  });

  it('should not record a call the exporter gave up on while delayMs held it', async () => {
    const r = await receiver({ delayMs: 3000 });
    const exporter = new OTLPTraceExporter({ url: r.endpoint, timeoutMillis: 1000 });
    cleanups.push(() => exporter.shutdown());

    const result = await exportSpans(exporter, oneReadableSpan('too-slow'));
    assert.equal(result.code, ExportResultCode.FAILED);
    assert.equal((result.error as { code?: number } | undefined)?.code, grpc.status.DEADLINE_EXCEEDED);
    await new Promise((resolve) => setTimeout(resolve, 3500)); // past the receiver's delay
    assert.deepStrictEqual(r.spans(), []);
    assert.equal(r.requests.trace, 1);
  });

  it('should reject waits at the deadline saying how much arrived', async () => {
    const r = await receiver();
    await assert.rejects(r.waitForSpans(1, 50), /wanted 1 span\(s\) within 50 ms, 0 arrived/);
    await assert.rejects(r.waitForMetric('nope', 50), /no metric 'nope' within 50 ms; 0 metric\(s\) arrived/);
  });

  it('should acknowledge a logs export and reject a body that is not an OTLP request', async () => {
    const r = await receiver();
    const client = new grpc.Client(`127.0.0.1:${r.port}`, grpc.credentials.createInsecure());
    cleanups.push(async () => client.close());
    const call = (body: Buffer): Promise<grpc.ServiceError | null> => new Promise((resolve) => {
      client.makeUnaryRequest('/opentelemetry.proto.collector.logs.v1.LogsService/Export',
        (b: Buffer) => b, (b: Buffer) => b, body, (err) => resolve(err));
    });
    assert.equal(await call(Buffer.alloc(0)), null); // an empty ExportLogsServiceRequest
    const bad = await call(Buffer.from([0x0a, 0x05, 0x01])); // field 1, length 5, 1 byte given
    assert.equal(bad?.code, grpc.status.INVALID_ARGUMENT);
    assert.match(bad?.details ?? '', /cannot decode opentelemetry\.proto\.collector\.logs\.v1\.ExportLogsServiceRequest/);
    assert.deepStrictEqual(r.requests, { trace: 0, metrics: 0, logs: 2, rejected: 0 });
  });

  it('should close idempotently and end pending waits', async () => {
    const r = await startOtlpReceiver();
    const pending = r.waitForSpans(1, 10_000);
    await Promise.all([r.close(), r.close()]);
    await r.close();
    await assert.rejects(pending, /closed/);
  });
});
