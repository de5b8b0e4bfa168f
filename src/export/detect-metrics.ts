// The SYN accounting and the detections as metrics, read from the detection stage at every
// collection (observable instruments: nothing happens per record or per SYN). Names, units
// and attributes: metric-names.ts.
import type { Meter, ObservableResult } from '@opentelemetry/api';
import { metricSpec } from './metric-names.js';
import type { DetectSources } from '../detect/detector.js';

export function observeDetect(meter: Meter, d: DetectSources): void {
  const counter = (name: string, read: (r: ObservableResult) => void) => {
    const m = metricSpec(name);
    meter.createObservableCounter(m.name, { unit: m.unit, description: m.description }).addCallback(read);
  };
  const byPort = (r: ObservableResult, values: Map<number | string, number>) => {
    for (const [port, n] of values) r.observe(n, { 'network.local.port': port });
  };
  counter('tcp.syn.received', (r) => byPort(r, d.synsReceived()));
  counter('tcp.syn.queue_full', (r) => byPort(r, d.synQueueFull()));
  counter('tcp.syn.synack_retransmits', (r) => byPort(r, d.synackRetransmits()));
  const halfOpen = metricSpec('tcp.syn.half_open');
  meter.createObservableGauge(halfOpen.name, { unit: halfOpen.unit, description: halfOpen.description })
    .addCallback((r) => byPort(r, d.halfOpen()));
  counter('tcp.syn.refused', (r) => r.observe(d.synsRefused()));
  const perNetns = (name: string, pick: (c: ReturnType<DetectSources['netns']> extends Map<number, infer C> ? C : never) => number) =>
    counter(name, (r) => { for (const [ns, c] of d.netns()) r.observe(pick(c), { 'tcpspan.netns': ns }); });
  perNetns('tcp.syn.cookies.sent', (c) => c.syncookiesSent);
  perNetns('tcp.listen.overflows', (c) => c.listenOverflows);
  perNetns('tcp.listen.drops', (c) => c.listenDrops);
  counter('tcpspan.detections', (r) => {
    for (const [kind, n] of Object.entries(d.detections())) r.observe(n, { 'tcpspan.detection.kind': kind });
  });
  counter('tcpspan.detect.peers.evicted', (r) => r.observe(d.scanPeersEvicted()));
}
