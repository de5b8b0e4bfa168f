// Connection metrics aggregated in place, read as the metric reader reads a MetricProducer.
import assert from 'node:assert/strict';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { AggregationTemporality, DataPointType, type HistogramMetricData, type SumMetricData } from '@opentelemetry/sdk-metrics';
import type { ConnectionRecord } from '../src/correlate/connection-record.js';
import { createConnectionMetrics } from '../src/export/connection-metrics.js';
import { metricSpec } from '../src/export/metric-names.js';

const RESOURCE = resourceFromAttributes({ 'service.name': 'tcpspan-test' });

function rec(over: Partial<ConnectionRecord>): ConnectionRecord {
  return {
    cookie: 1, kind: 'client', family: 'ipv4', localAddress: '10.0.0.1', localPort: 1, peerAddress: '10.0.0.2', peerPort: 2,
    netns: 1, startNs: 0, endNs: 1e6, handshakeNs: undefined, closeReason: 'fin', closeInitiator: 'local', errno: 0,
    errorName: undefined, retransmits: 0, retransmitsFailed: 0, rtt: undefined, srttUs: undefined, bytesSent: 0,
    bytesReceived: 0, segmentsSent: 0, segmentsReceived: 0, pid: undefined, executableName: undefined, cgroupId: undefined,
    containerId: undefined, podUid: undefined, openBeforeStart: false,
    kernelEventsLost: false, evicted: false, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16), parentSpanId: undefined,
    events: [], droppedEvents: 0, ...over,
  };
}

describe('connection metrics', () => {
  it('should count, bucket and sum what each finished end did, per attribute set', async () => {
    const m = createConnectionMetrics(RESOURCE);
    m.record(rec({ endNs: 0.0004e9, handshakeNs: 50_000, rtt: { samples: 3, minUs: 20, avgUs: 30, maxUs: 40 }, retransmits: 2 }));
    m.record(rec({ endNs: 0.0005e9, handshakeNs: 100_000 })); // on a bound: counted in that bucket (inclusive)
    m.record(rec({ kind: 'server', family: 'ipv6', closeReason: 'reset_received', endNs: 7e9, retransmits: 5 }));
    const { resourceMetrics, errors } = await m.producer.collect();
    assert.deepEqual(errors, []);
    assert.equal(resourceMetrics.resource, RESOURCE);
    const metrics = Object.fromEntries(resourceMetrics.scopeMetrics[0]!.metrics.map((x) => [x.descriptor.name, x]));
    assert.deepEqual(Object.keys(metrics).sort(),
      ['tcp.connection.duration', 'tcp.connection.handshake.duration', 'tcp.connection.retransmits', 'tcp.connection.rtt', 'tcp.connections.closed']);

    const duration = metrics['tcp.connection.duration'] as HistogramMetricData;
    assert.equal(duration.dataPointType, DataPointType.HISTOGRAM);
    assert.equal(duration.aggregationTemporality, AggregationTemporality.CUMULATIVE);
    assert.deepEqual(duration.descriptor.unit, 's');
    const byReason = Object.fromEntries(duration.dataPoints.map((p) => [String(p.attributes['tcp.close.reason']), p]));
    assert.deepEqual(byReason['fin']!.attributes, { 'tcp.connection.kind': 'client', 'network.type': 'ipv4', 'tcp.close.reason': 'fin' });
    const bounds = metricSpec('tcp.connection.duration').buckets!;
    const fin = byReason['fin']!.value;
    assert.deepEqual(fin.buckets.boundaries, bounds);
    assert.deepEqual(fin.buckets.counts, [0, 2, ...Array(bounds.length - 1).fill(0)]); // 0.4 ms and 0.5 ms: (0.1, 0.5]
    assert.deepEqual([fin.count, fin.sum, fin.min, fin.max], [2, 0.0009, 0.0004, 0.0005]);
    assert.deepEqual(byReason['reset_received']!.attributes, { 'tcp.connection.kind': 'server', 'network.type': 'ipv6', 'tcp.close.reason': 'reset_received' });

    const closed = metrics['tcp.connections.closed'] as SumMetricData;
    assert.equal(closed.isMonotonic, true);
    assert.deepEqual(closed.dataPoints.map((p) => [p.attributes['tcp.close.reason'], p.value]).sort(), [['fin', 2], ['reset_received', 1]]);
    const retrans = metrics['tcp.connection.retransmits'] as SumMetricData;
    assert.deepEqual(retrans.dataPoints.map((p) => [p.attributes['tcp.connection.kind'], p.value]).sort(), [['client', 2], ['server', 5]]);
    const rtt = metrics['tcp.connection.rtt'] as HistogramMetricData;
    assert.deepEqual(rtt.dataPoints.map((p) => [p.value.count, p.value.sum]), [[1, 0.00003]]);
    const hs = metrics['tcp.connection.handshake.duration'] as HistogramMetricData;
    assert.deepEqual(hs.dataPoints.map((p) => [p.value.count, p.value.sum]), [[2, 0.00005 + 0.0001]]);

    // cumulative: a later collection still counts everything, with the same start
    m.record(rec({}));
    const again = (await m.producer.collect()).resourceMetrics.scopeMetrics[0]!.metrics.find((x) => x.descriptor.name === 'tcp.connections.closed') as SumMetricData;
    assert.deepEqual(again.dataPoints.map((p) => [p.attributes['tcp.close.reason'], p.value]).sort(), [['fin', 3], ['reset_received', 1]]);
    assert.deepEqual(again.dataPoints[0]!.startTime, closed.dataPoints[0]!.startTime);
  });

  it('should report nothing before the first connection', async () => {
    const { resourceMetrics } = await createConnectionMetrics(RESOURCE).producer.collect();
    assert.deepEqual(resourceMetrics.scopeMetrics, []);
  });
});
