// tcpspan's own health as metrics, read from the stage that owns each count at every
// collection (observable instruments: nothing happens per record). What the connections
// did is in connection-metrics.ts. Names, units and attributes: metric-names.ts.
import type { Meter, ObservableResult } from '@opentelemetry/api';
import { metricSpec } from './metric-names.js';
import type { SpanSpoolStats } from './span-export-queue.js';

/** Read at each metric collection: tcpspan's own counters, from the stage that owns them. */
export interface HealthSources {
  kernelEventsReceived(): number;
  kernelEventsLost(): Record<string, number>;
  connectionsOpen(): number;
  connectionsSeen(): number;
  correlatorDrops(): Record<string, number>;
  spansExported(): number;
  spansDropped(): Record<string, number>;
  /** reads of /proc/PID/environ that failed, by reason (empty without attribution) */
  serviceLookupsFailed(): Record<string, number>;
  /** ends sampling left out: not a loss, so not among the drops */
  spansSampledOut(): number;
  /** open ends ended because the kernel no longer held them after a loss */
  closesLost(): number;
  /** the span spools added up; undefined without one (then no spool metric has a data point) */
  spool(): SpanSpoolStats | undefined;
}

export function observeHealth(meter: Meter, health: HealthSources): void {
  const counter = (name: string, read: (r: ObservableResult) => void) => {
    const m = metricSpec(name);
    meter.createObservableCounter(m.name, { unit: m.unit, description: m.description }).addCallback(read);
  };
  counter('tcp.connections.opened', (r) => r.observe(health.connectionsSeen()));
  const active = metricSpec('tcp.connections.active');
  meter.createObservableUpDownCounter(active.name, { unit: active.unit, description: active.description })
    .addCallback((r) => r.observe(health.connectionsOpen()));
  counter('tcpspan.kernel.events', (r) => r.observe(health.kernelEventsReceived()));
  counter('tcpspan.kernel.events.lost', (r) => observeByReason(r, health.kernelEventsLost()));
  counter('tcpspan.events.dropped', (r) => observeByReason(r, health.correlatorDrops()));
  counter('tcpspan.spans.exported', (r) => r.observe(health.spansExported()));
  counter('tcpspan.spans.dropped', (r) => observeByReason(r, health.spansDropped()));
  counter('tcpspan.service.lookups.failed', (r) => observeByReason(r, health.serviceLookupsFailed()));
  counter('tcpspan.spans.sampled_out', (r) => r.observe(health.spansSampledOut()));
  counter('tcpspan.connections.close_lost', (r) => r.observe(health.closesLost()));
  const spool = (read: (s: SpanSpoolStats) => number) => (r: ObservableResult) => {
    const s = health.spool();
    if (s !== undefined) r.observe(read(s));
  };
  counter('tcpspan.spans.spooled', spool((s) => s.spooled));
  counter('tcpspan.spans.replayed', spool((s) => s.replayed));
  for (const [name, read] of [['tcpspan.spool.spans', (s: SpanSpoolStats) => s.spans], ['tcpspan.spool.usage', (s: SpanSpoolStats) => s.bytes]] as const) {
    const m = metricSpec(name);
    meter.createObservableUpDownCounter(m.name, { unit: m.unit, description: m.description }).addCallback(spool(read));
  }
}

function observeByReason(r: ObservableResult, byReason: Record<string, number>): void {
  for (const [reason, n] of Object.entries(byReason)) r.observe(n, { reason });
}
