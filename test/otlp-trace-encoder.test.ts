// tcpspan's protobuf encoder against the SDK's serializer: the same spans, decoded from
// both requests with the official protos, must read the same.
import assert from 'node:assert/strict';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { toHrTime, type SpanData } from '../src/correlate/span-data.js';
import { createTraceRequestEncoder } from '../src/export/otlp-trace-encoder.js';
import { toReadableSpan } from '../src/export/readable-span.js';
import { createResourceFor } from '../src/export/owner-resource.js';
import { createSpanOwners } from '../src/attribute/span-owner.js';
import { decodeTraceRequest, otlpRoot, traceRequestResources } from './support/otlp-receiver.js';

/** Span.dropped_links_count of each span of a request (the flattened spans leave it out). */
function droppedLinks(body: Uint8Array): number[] {
  const type = otlpRoot().lookupType('opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest');
  const req = type.toObject(type.decode(body), { defaults: true }) as { resourceSpans: { scopeSpans: { spans: { droppedLinksCount: number }[] }[] }[] };
  return req.resourceSpans.flatMap((r) => r.scopeSpans.flatMap((s) => s.spans.map((x) => x.droppedLinksCount)));
}

const RESOURCE = resourceFromAttributes({
  'service.name': 'tcpspan-test', 'service.version': '0.1.0', 'host.name': 'lab-1', 'os.type': 'linux', 'process.runtime.version': 24,
});
const SCOPE = { name: 'tcpspan', version: '0.1.0' };
const T0 = 1_763_000_000_123_456_789n;
/** a frozen attribute map shared by many events, as span-events.ts hands them out */
const SHARED = Object.freeze({ 'network.connection.state': 'closed' });

function span(i: number, over: Partial<SpanData> = {}): SpanData {
  const t = T0 + BigInt(i) * 1_000_003n;
  return {
    name: 'tcp.connection', kind: (['client', 'server', 'internal'] as const)[i % 3]!,
    traceId: (0x4bf92f3577b34da6a3ce929d0e0e0000n + BigInt(i)).toString(16).padStart(32, '0'),
    spanId: (0x00f067aa0ba90000n + BigInt(i)).toString(16).padStart(16, '0'),
    ...(i % 3 === 1 ? { parentSpanId: 'b7ad6b7169203331' } : {}),
    // kept by sampling (pipeline/sampler.ts): by a rule, or by the ratio
    ...(i % 4 === 2 ? { traceState: i % 8 === 2 ? 'ot=th:0' : 'ot=th:e666666666666' } : {}),
    startTime: toHrTime(t), endTime: toHrTime(t + 48_211_500n + BigInt(i)),
    attributes: {
      'network.transport': 'tcp', 'network.local.address': i % 2 ? '2001:db8::1' : '10.0.0.1', 'network.local.port': 40_000 + i,
      'tcp.rtt.avg': 0.0000875 * (i + 1), 'tcp.rtt.min': 0, 'tcp.handshake.duration': 1e-9 * (i + 1),
      'tcp.bytes.sent': 2 ** 40 + i, 'tcpspan.socket.cookie': 2 ** 53 - 1 - i, 'tcp.retransmits.delta': -3 - i,
      'tcpspan.open_before_start': i % 2 === 0, 'process.executable.name': `nödè-${'x'.repeat(i * 13)}`,
      // the same key and value also stand in an event: encoded for each field they stand in
      'error.type': 'ECONNRESET',
    },
    events: Array.from({ length: i % 4 }, (_, k) => ({
      name: k % 2 ? 'tcp.retransmit' : 'tcp.state_change', time: toHrTime(t + BigInt(k) * 999_999_999n),
      attributes: k === 2 ? SHARED : { 'network.connection.state': 'established', 'tcp.retransmit.segments': k, 'tcp.retransmit.sent': k % 2 === 0, 'error.type': 'ECONNRESET' },
    })),
    droppedEventsCount: i % 5,
    status: i % 2 ? { code: 'error', message: `connection reset by peer (ECONNRESET) ${'é'.repeat(i)}` } : { code: 'unset' },
    ...over,
  };
}

describe('OTLP trace encoder', () => {
  it('should write requests the official protos read exactly as they read the SDK serializer\'s', () => {
    const spans = Array.from({ length: 40 }, (_, i) => span(i));
    const ours = createTraceRequestEncoder(RESOURCE, SCOPE).encode(spans);
    const sdk = ProtobufTraceSerializer.serializeRequest(spans.map((s) => toReadableSpan(s, RESOURCE, SCOPE)))!;
    const decoded = decodeTraceRequest(ours);
    assert.equal(decoded.length, 40);
    assert.deepStrictEqual(decoded, decodeTraceRequest(sdk));
    // and the values are the given ones, to the nanosecond
    assert.equal(decoded[7]!.startTimeUnixNano, T0 + 7n * 1_000_003n);
    assert.equal(decoded[7]!.attributes['tcpspan.socket.cookie'], 2 ** 53 - 8);
    assert.equal(decoded[7]!.attributes['tcp.retransmits.delta'], -10);
    assert.deepEqual([2, 6, 7].map((i) => decoded[i]!.traceState), ['ot=th:0', 'ot=th:e666666666666', '']);
  });

  it('should write a span larger than the first buffer, and one with nothing optional', () => {
    const big = span(3, { attributes: Object.fromEntries(Array.from({ length: 3000 }, (_, k) => [`a.${k}`, 'v'.repeat(k % 200)])) });
    const bare = span(0, { attributes: {}, events: [], droppedEventsCount: 0 });
    const encoder = createTraceRequestEncoder(RESOURCE, SCOPE);
    const ours = encoder.encode([big, bare]);
    assert.ok(ours.length > 64 * 1024);
    const sdk = ProtobufTraceSerializer.serializeRequest([big, bare].map((s) => toReadableSpan(s, RESOURCE, SCOPE)))!;
    assert.deepStrictEqual(decodeTraceRequest(ours), decodeTraceRequest(sdk));
    // the encoder is reused: a second request does not carry the first's bytes
    assert.deepStrictEqual(decodeTraceRequest(encoder.encode([bare])), decodeTraceRequest(ProtobufTraceSerializer.serializeRequest([toReadableSpan(bare, RESOURCE, SCOPE)])!));
  });

  describe('spans of several owners', () => {
    // tcpspan's own spans (no owner) between those of applications named by their service, their
    // container, their pod, or all three, interleaved
    const owners = createSpanOwners();
    const C1 = '1c'.repeat(32), C2 = '2c'.repeat(32), C3 = '3c'.repeat(32);
    const POD = '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f', POD2 = '0b1c2d3e4f5061728394a5b6c7d8e9f0';
    const OWNERS = [
      undefined,
      owners.of('checkout', undefined, undefined), // a host process that names its service
      owners.of(undefined, C1, undefined), //         a Docker container's process that names none
      owners.of('cart', C2, POD), //                  a pod's container
      undefined,
      owners.of('checkout', undefined, undefined),
      owners.of(undefined, undefined, POD2), //       a pod's own cgroup
      owners.of('checkout', C3, POD), //              the same service in another container
      owners.of('ünïcode svc', undefined, undefined),
      owners.of(undefined, C1, undefined),
    ];
    const spans = Array.from({ length: 80 }, (_, i) => {
      const owner = OWNERS[i % OWNERS.length];
      return span(i % 40, owner === undefined ? {} : { owner });
    });
    const resourceFor = createResourceFor(RESOURCE);
    const sdkRequest = (ss: SpanData[]) =>
      ProtobufTraceSerializer.serializeRequest(ss.map((s) => toReadableSpan(s, resourceFor(s.owner), SCOPE)))!;

    it('should write one ResourceSpans per owner, read by the official protos as the SDK serializer\'s', () => {
      const encoder = createTraceRequestEncoder(RESOURCE, SCOPE);
      const ours = encoder.encode(spans);
      const sdk = sdkRequest(spans);
      assert.deepStrictEqual(decodeTraceRequest(ours), decodeTraceRequest(sdk));
      const own = { 'service.name': 'tcpspan-test', 'service.version': '0.1.0', 'host.name': 'lab-1', 'os.type': 'linux', 'process.runtime.version': 24 };
      const of = (name: string) => ({ 'host.name': 'lab-1', 'os.type': 'linux', 'process.runtime.version': 24, 'service.name': name });
      // in order of first appearance; tcpspan's service.* attributes only where no service is named
      assert.deepStrictEqual(traceRequestResources(ours), [
        { resource: own, spans: 16 },
        { resource: of('checkout'), spans: 16 },
        { resource: { ...own, 'container.id': C1 }, spans: 16 },
        { resource: { ...of('cart'), 'container.id': C2, 'k8s.pod.uid': POD }, spans: 8 },
        { resource: { ...own, 'k8s.pod.uid': POD2 }, spans: 8 },
        { resource: { ...of('checkout'), 'container.id': C3, 'k8s.pod.uid': POD }, spans: 8 },
        { resource: of('ünïcode svc'), spans: 8 },
      ]);
      assert.deepStrictEqual(traceRequestResources(ours), traceRequestResources(sdk));
    });

    it('should write the same request from spans encoded one by one, each with its owner', () => {
      const encoder = createTraceRequestEncoder(RESOURCE, SCOPE);
      const pieces = spans.map((s) => encoder.encodeSpan(s));
      assert.ok(pieces.every((p, i) => p.owner === spans[i]!.owner));
      const whole = encoder.encode(spans);
      assert.deepStrictEqual(Buffer.from(encoder.encodeEncoded(pieces)), Buffer.from(whole));
      // one owner alone, and tcpspan's own alone
      const cart = OWNERS[3]!;
      assert.deepStrictEqual(decodeTraceRequest(encoder.encodeEncoded(pieces.filter((p) => p.owner === cart))),
        decodeTraceRequest(sdkRequest(spans.filter((s) => s.owner === cart))));
      const own = pieces.filter((p) => p.owner === undefined);
      assert.deepStrictEqual(traceRequestResources(encoder.encodeEncoded(own)).map((r) => r.resource['service.name']), ['tcpspan-test']);
    });

    it('should group by owner key: owners made again after their cache started over share a ResourceSpans', () => {
      const encoder = createTraceRequestEncoder(RESOURCE, SCOPE);
      const again = createSpanOwners().of('cart', C2, POD)!;
      assert.notEqual(again, OWNERS[3]);
      const pair = [span(1, { owner: OWNERS[3]! }), span(2, { owner: again })];
      assert.deepStrictEqual(traceRequestResources(encoder.encode(pair)).map((r) => r.spans), [2]);
      assert.deepStrictEqual(traceRequestResources(encoder.encodeEncoded(pair.map((s) => encoder.encodeSpan(s)))).map((r) => r.spans), [2]);
    });

    it('should keep a schema URL on every ResourceSpans', () => {
      const withSchema = resourceFromAttributes(RESOURCE.attributes, { schemaUrl: 'https://opentelemetry.io/schemas/1.38.0' });
      const encoder = createTraceRequestEncoder(withSchema, SCOPE);
      const forSchema = createResourceFor(withSchema);
      const sdk = ProtobufTraceSerializer.serializeRequest(spans.map((s) => toReadableSpan(s, forSchema(s.owner), SCOPE)))!;
      assert.deepStrictEqual(Buffer.from(encoder.encodeEncoded(spans.map((s) => encoder.encodeSpan(s)))), Buffer.from(encoder.encode(spans)));
      assert.deepStrictEqual(decodeTraceRequest(encoder.encode(spans)), decodeTraceRequest(sdk));
    });
  });

  it('should write the same request from spans encoded one by one, across slabs', () => {
    const encoder = createTraceRequestEncoder(RESOURCE, SCOPE);
    // enough spans to fill several slabs, some large
    const spans = Array.from({ length: 600 }, (_, i) => span(i % 40, i % 97 === 0
      ? { attributes: Object.fromEntries(Array.from({ length: 400 }, (_, k) => [`big.${k}`, 'w'.repeat(100)])) } : {}));
    const pieces = spans.map((s) => encoder.encodeSpan(s));
    const whole = encoder.encode(spans);
    assert.deepStrictEqual(Buffer.from(encoder.encodeEncoded(pieces)), Buffer.from(whole));
    // pieces stay valid after later spans were encoded
    assert.deepStrictEqual(decodeTraceRequest(encoder.encodeEncoded(pieces.slice(0, 3))), decodeTraceRequest(encoder.encode(spans.slice(0, 3))));
    assert.deepStrictEqual(decodeTraceRequest(encoder.encodeEncoded([])), []);
  });

  it('should write span links and the dropped-links count as the SDK does (inspect.traceparent)', () => {
    const links = [
      { traceId: '0af7651916cd43dd8448eb211c80319c', spanId: 'b7ad6b7169203331', flags: 1 },
      { traceId: 'ffffffffffffffffffffffffffffffff', spanId: '0000000000000001', flags: 0 },
    ];
    const spans = [span(1, { links, droppedLinksCount: 3 }), span(2, { links: [links[0]!], droppedLinksCount: 0 }), span(3)];
    const ours = createTraceRequestEncoder(RESOURCE, SCOPE).encode(spans);
    const sdk = ProtobufTraceSerializer.serializeRequest(spans.map((s) => toReadableSpan(s, RESOURCE, SCOPE)))!;
    const decoded = decodeTraceRequest(ours);
    assert.deepStrictEqual(decoded, decodeTraceRequest(sdk));
    // remote span contexts: HAS_IS_REMOTE and IS_REMOTE beside the W3C flags
    assert.deepEqual(decoded[0]!.links.map((l) => [l.traceId, l.spanId, l.flags]), [
      ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 0x301], ['ffffffffffffffffffffffffffffffff', '0000000000000001', 0x300]]);
    assert.deepEqual(decoded[2]!.links, []);
    assert.deepEqual(droppedLinks(ours), droppedLinks(sdk));
    assert.deepEqual(droppedLinks(ours), [3, 0, 0]);
  });
});
