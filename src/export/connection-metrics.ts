// What the connections did, as metrics, aggregated here and handed to the metric
// reader as a MetricProducer at each collection.
//
// Why not the SDK's instruments: every record() there hashes its attribute set
// (sorting and JSON-stringifying it), five times per connection end, which cost more
// than encoding the span. Here an end adds to a slot chosen by three small indexes
// (kind, network type, close reason): a few array writes, no allocation. Temporality
// is cumulative, as the SDK's instruments report by default.
//
// Open connections: tcp.connection.bytes counts each checkpoint's interval (correlator.checkpointMs)
// and, at close, what the end did after its last checkpoint, so its rate includes ends still
// open. tcp.connection.open.age is built at each collection from the ends open then (a snapshot:
// each export starts its own time window, so a backend replaces the last one rather than adding).
import { ValueType, type Attributes, type HrTime } from '@opentelemetry/api';
import { hrTime } from '@opentelemetry/core';
import { AggregationTemporality, DataPointType, type CollectionResult, type MetricData, type MetricProducer } from '@opentelemetry/sdk-metrics';
import type { Resource } from '@opentelemetry/resources';
import type { CloseReason, ConnectionKind, ConnectionRecord } from '../correlate/connection-record.js';
import type { CheckpointRecord } from '../correlate/checkpoint.js';
import { METRICS, type MetricSpec } from './metric-names.js';

const KINDS: readonly ConnectionKind[] = ['client', 'server', 'unknown'];
const FAMILIES = ['ipv4', 'ipv6'] as const;
const REASONS: readonly CloseReason[] = ['fin', 'reset_received', 'reset_sent', 'refused', 'timeout', 'aborted', 'incomplete'];
const N_BASE = KINDS.length * FAMILIES.length;
const N_REASON = N_BASE * REASONS.length;

const KIND_INDEX: Record<ConnectionKind, number> = { client: 0, server: 1, unknown: 2 };
const REASON_INDEX = Object.fromEntries(REASONS.map((r, i) => [r, i])) as Record<CloseReason, number>;

/** An explicit-bucket histogram per attribute slot, in flat arrays. */
class Histograms {
  readonly counts: Float64Array;
  readonly sum: Float64Array;
  readonly n: Float64Array;
  readonly min: Float64Array;
  readonly max: Float64Array;
  private readonly _width: number;

  constructor(readonly boundaries: readonly number[], readonly slots: number) {
    this._width = boundaries.length + 1;
    this.counts = new Float64Array(slots * this._width);
    this.sum = new Float64Array(slots);
    this.n = new Float64Array(slots);
    this.min = new Float64Array(slots).fill(Infinity);
    this.max = new Float64Array(slots).fill(-Infinity);
  }

  record(slot: number, v: number): void {
    const b = this.boundaries;
    let i = 0;
    while (i < b.length && v > b[i]!) i++; // bounds are inclusive upper limits
    this.counts[slot * this._width + i]!++;
    this.sum[slot] += v;
    this.n[slot]!++;
    if (v < this.min[slot]!) this.min[slot] = v;
    if (v > this.max[slot]!) this.max[slot] = v;
  }

  bucketCounts(slot: number): number[] {
    return Array.from(this.counts.subarray(slot * this._width, (slot + 1) * this._width));
  }
}

/** Visits every open end: kind, family and start (CLOCK_MONOTONIC ns). */
export type OpenEnds = (visit: (kind: ConnectionKind, family: 'ipv4' | 'ipv6', startNs: number) => void) => void;

export interface ConnectionMetrics {
  /** One finished connection end. Never throws. */
  record(rec: ConnectionRecord): void;
  /** One checkpoint of an open end. Never throws. */
  recordCheckpoint(cp: CheckpointRecord): void;
  /** Where the open ends' ages come from at each collection (the bridge), and the monotonic clock now (ns). */
  observeOpen(ends: OpenEnds, nowMonoNs: () => number): void;
  /** For the metric reader (PeriodicExportingMetricReader's metricProducers). */
  readonly producer: MetricProducer;
}

export function createConnectionMetrics(resource: Resource): ConnectionMetrics {
  const spec = (name: string): MetricSpec => METRICS.find((m) => m.name === name)!;
  const durationSpec = spec('tcp.connection.duration'), handshakeSpec = spec('tcp.connection.handshake.duration');
  const rttSpec = spec('tcp.connection.rtt'), retransSpec = spec('tcp.connection.retransmits');
  const closedSpec = spec('tcp.connections.closed');
  const bytesSpec = spec('tcp.connection.bytes'), ageSpec = spec('tcp.connection.open.age');
  const bytes = new Float64Array(N_BASE * 2); // [slot * 2]: transmit, [slot * 2 + 1]: receive
  let openEnds: OpenEnds | undefined;
  let nowMono: () => number = () => 0;
  const duration = new Histograms(durationSpec.buckets!, N_REASON);
  const handshake = new Histograms(handshakeSpec.buckets!, N_BASE);
  const rtt = new Histograms(rttSpec.buckets!, N_BASE);
  const closed = new Float64Array(N_REASON);
  const retransmits = new Float64Array(N_BASE);
  const startTime: HrTime = hrTime();

  // the attribute sets, built once
  const base: Attributes[] = [];
  const withReason: Attributes[] = [];
  for (let k = 0; k < KINDS.length; k++) {
    for (let f = 0; f < FAMILIES.length; f++) {
      const b = { 'tcp.connection.kind': KINDS[k]!, 'network.type': FAMILIES[f]! };
      base[k * FAMILIES.length + f] = b;
      for (let r = 0; r < REASONS.length; r++) withReason[(k * FAMILIES.length + f) * REASONS.length + r] = { ...b, 'tcp.close.reason': REASONS[r]! };
    }
  }

  const descriptor = (m: MetricSpec) => ({ name: m.name, description: m.description, unit: m.unit, valueType: ValueType.DOUBLE });
  const histogram = (m: MetricSpec, h: Histograms, attrs: Attributes[], endTime: HrTime, start: HrTime = startTime): MetricData => ({
    descriptor: descriptor(m), aggregationTemporality: AggregationTemporality.CUMULATIVE, dataPointType: DataPointType.HISTOGRAM,
    dataPoints: attrs.flatMap((attributes, slot) => (h.n[slot]! > 0 ? [{
      startTime: start, endTime, attributes,
      value: {
        buckets: { boundaries: [...h.boundaries], counts: h.bucketCounts(slot) },
        sum: h.sum[slot]!, count: h.n[slot]!, min: h.min[slot]!, max: h.max[slot]!,
      },
    }] : [])),
  });
  const withDirection: Attributes[] = base.flatMap((b) => [{ ...b, 'network.io.direction': 'transmit' }, { ...b, 'network.io.direction': 'receive' }]);
  const baseSlot = (kind: ConnectionKind, family: 'ipv4' | 'ipv6') => KIND_INDEX[kind] * FAMILIES.length + (family === 'ipv4' ? 0 : 1);
  const openAges = (endTime: HrTime): MetricData | undefined => {
    if (openEnds === undefined) return undefined;
    const ages = new Histograms(ageSpec.buckets!, N_BASE);
    const now = nowMono();
    openEnds((kind, family, startNs) => ages.record(baseSlot(kind, family), Math.max(0, now - startNs) / 1e9));
    // a snapshot: each export its own window (start = end), which a backend takes as a reset
    return histogram(ageSpec, ages, base, endTime, endTime);
  };
  const counter = (m: MetricSpec, values: Float64Array, attrs: Attributes[], endTime: HrTime): MetricData => ({
    descriptor: { ...descriptor(m), valueType: ValueType.INT }, aggregationTemporality: AggregationTemporality.CUMULATIVE,
    dataPointType: DataPointType.SUM, isMonotonic: true,
    dataPoints: attrs.flatMap((attributes, slot) => (values[slot]! > 0 ? [{ startTime, endTime, attributes, value: values[slot]! }] : [])),
  });

  return {
    record(rec) {
      try {
        const b = KIND_INDEX[rec.kind] * FAMILIES.length + (rec.family === 'ipv4' ? 0 : 1);
        const r = b * REASONS.length + REASON_INDEX[rec.closeReason];
        duration.record(r, Math.max(0, rec.endNs - rec.startNs) / 1e9);
        closed[r]!++;
        if (rec.handshakeNs !== undefined) handshake.record(b, rec.handshakeNs / 1e9);
        if (rec.rtt) rtt.record(b, rec.rtt.avgUs / 1e6);
        if (rec.retransmits) retransmits[b] += rec.retransmits;
        // what the end did after its last checkpoint (all of it without one)
        const cp = rec.checkpointed;
        if (rec.bytesSent !== undefined) bytes[2 * b] += Math.max(0, rec.bytesSent - (cp?.bytesSent ?? 0));
        if (rec.bytesReceived !== undefined) bytes[2 * b + 1] += Math.max(0, rec.bytesReceived - (cp?.bytesReceived ?? 0));
      } catch {
        // metrics must never stop spans
      }
    },
    recordCheckpoint(cp) {
      try {
        const b = baseSlot(cp.kind, cp.family);
        bytes[2 * b] += cp.interval.bytesSent;
        bytes[2 * b + 1] += cp.interval.bytesReceived;
      } catch {
        // metrics must never stop spans
      }
    },
    observeOpen(ends, now) {
      openEnds = ends;
      nowMono = now;
    },
    producer: {
      async collect(): Promise<CollectionResult> {
        const endTime = hrTime();
        const metrics = [
          histogram(durationSpec, duration, withReason, endTime),
          histogram(handshakeSpec, handshake, base, endTime),
          histogram(rttSpec, rtt, base, endTime),
          counter(retransSpec, retransmits, base, endTime),
          counter(closedSpec, closed, withReason, endTime),
          counter(bytesSpec, bytes, withDirection, endTime),
          ...(openEnds !== undefined ? [openAges(endTime)!] : []),
        ].filter((m) => m.dataPoints.length > 0);
        return { resourceMetrics: { resource, scopeMetrics: metrics.length ? [{ scope: { name: 'tcpspan' }, metrics }] : [] }, errors: [] };
      },
    },
  };
}
