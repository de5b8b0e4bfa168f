// tcpspan's metrics: what the connections did, and how tcpspan itself is doing.
// Names, units and attributes are documented in the README ("Metrics").
import type { Meter } from '@opentelemetry/api';
import type { ConnectionRecord } from '../correlate/connection-record.js';

/** Read at each metric collection: tcpspan's own counters, from the stage that owns them. */
export interface HealthSources {
  kernelEventsReceived(): number;
  kernelEventsLost(): Record<string, number>;
  connectionsOpen(): number;
  connectionsSeen(): number;
  correlatorDrops(): Record<string, number>;
  spansExported(): number;
  spansDropped(): Record<string, number>;
}

export interface BridgeMetrics {
  /** One finished connection end. Never throws. */
  record(rec: ConnectionRecord): void;
}

const DURATION_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800];
const RTT_BUCKETS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];

export const METRIC_NAMES = {
  connectionDuration: 'tcp.connection.duration',
  handshakeDuration: 'tcp.connection.handshake.duration',
  rtt: 'tcp.connection.rtt',
  retransmits: 'tcp.connection.retransmits',
  closed: 'tcp.connections.closed',
  opened: 'tcp.connections.opened',
  active: 'tcp.connections.active',
  kernelEvents: 'tcpspan.kernel.events',
  kernelEventsLost: 'tcpspan.kernel.events.lost',
  eventsDropped: 'tcpspan.events.dropped',
  spansExported: 'tcpspan.spans.exported',
  spansDropped: 'tcpspan.spans.dropped',
} as const;

export function createBridgeMetrics(meter: Meter, health: HealthSources): BridgeMetrics {
  const duration = meter.createHistogram(METRIC_NAMES.connectionDuration, {
    unit: 's', description: 'Duration of TCP connections, from SYN to close', advice: { explicitBucketBoundaries: DURATION_BUCKETS },
  });
  const handshake = meter.createHistogram(METRIC_NAMES.handshakeDuration, {
    unit: 's', description: 'TCP handshake duration: SYN to ESTABLISHED', advice: { explicitBucketBoundaries: RTT_BUCKETS },
  });
  const rtt = meter.createHistogram(METRIC_NAMES.rtt, {
    unit: 's', description: 'Average smoothed RTT of each TCP connection', advice: { explicitBucketBoundaries: RTT_BUCKETS },
  });
  const retransmits = meter.createCounter(METRIC_NAMES.retransmits, {
    unit: '{segment}', description: 'TCP segments retransmitted (the kernel\'s count)',
  });
  const closed = meter.createCounter(METRIC_NAMES.closed, {
    unit: '{connection}', description: 'TCP connection ends closed, by kind and close reason',
  });

  meter.createObservableCounter(METRIC_NAMES.opened, { unit: '{connection}', description: 'TCP connection ends seen' })
    .addCallback((r) => r.observe(health.connectionsSeen()));
  meter.createObservableUpDownCounter(METRIC_NAMES.active, { unit: '{connection}', description: 'TCP connection ends open now' })
    .addCallback((r) => r.observe(health.connectionsOpen()));
  meter.createObservableCounter(METRIC_NAMES.kernelEvents, { unit: '{event}', description: 'Kernel events received by tcpspan' })
    .addCallback((r) => r.observe(health.kernelEventsReceived()));
  meter.createObservableCounter(METRIC_NAMES.kernelEventsLost, { unit: '{event}', description: 'Kernel events lost before reaching tcpspan, by reason' })
    .addCallback((r) => observeByReason(r, health.kernelEventsLost()));
  meter.createObservableCounter(METRIC_NAMES.eventsDropped, { unit: '{event}', description: 'Kernel events the correlator could not use, by reason' })
    .addCallback((r) => observeByReason(r, health.correlatorDrops()));
  meter.createObservableCounter(METRIC_NAMES.spansExported, { unit: '{span}', description: 'Spans accepted by the trace exporter' })
    .addCallback((r) => r.observe(health.spansExported()));
  meter.createObservableCounter(METRIC_NAMES.spansDropped, { unit: '{span}', description: 'Spans dropped, by reason' })
    .addCallback((r) => observeByReason(r, health.spansDropped()));

  return {
    record(rec) {
      try {
        const attrs = { 'tcp.connection.kind': rec.kind, 'network.type': rec.family };
        const withReason = { ...attrs, 'tcp.close.reason': rec.closeReason };
        duration.record(Math.max(0, rec.endNs - rec.startNs) / 1e9, withReason);
        closed.add(1, withReason);
        if (rec.handshakeNs !== undefined) handshake.record(rec.handshakeNs / 1e9, attrs);
        if (rec.rtt) rtt.record(rec.rtt.avgUs / 1e6, attrs);
        if (rec.retransmits) retransmits.add(rec.retransmits, attrs);
      } catch {
        // metrics must never stop spans
      }
    },
  };
}

function observeByReason(r: { observe(v: number, a?: Record<string, string>): void }, byReason: Record<string, number>): void {
  for (const [reason, n] of Object.entries(byReason)) r.observe(n, { reason });
}
