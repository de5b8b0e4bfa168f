// Every metric tcpspan exports: one table that the instruments, the connection-metrics
// producer, the README and the dashboard's test all read.

export type MetricType = 'histogram' | 'counter' | 'updowncounter' | 'gauge';

export interface MetricSpec {
  readonly name: string;
  readonly type: MetricType;
  readonly unit: string;
  readonly description: string;
  /** attribute keys its data points carry */
  readonly attributes: readonly string[];
  /** explicit bucket boundaries of a histogram */
  readonly buckets?: readonly number[];
}

const DURATION_BUCKETS = [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 1800];
const RTT_BUCKETS = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1];
const KIND_TYPE = ['tcp.connection.kind', 'network.type'];

export const METRICS: readonly MetricSpec[] = [
  // what the connections did (connection-metrics.ts)
  { name: 'tcp.connection.duration', type: 'histogram', unit: 's', description: 'Duration of TCP connections, from SYN to close', attributes: [...KIND_TYPE, 'tcp.close.reason'], buckets: DURATION_BUCKETS },
  { name: 'tcp.connection.handshake.duration', type: 'histogram', unit: 's', description: 'TCP handshake duration: SYN to ESTABLISHED', attributes: KIND_TYPE, buckets: RTT_BUCKETS },
  { name: 'tcp.connection.rtt', type: 'histogram', unit: 's', description: 'Average smoothed RTT of each TCP connection', attributes: KIND_TYPE, buckets: RTT_BUCKETS },
  { name: 'tcp.connection.retransmits', type: 'counter', unit: '{segment}', description: 'TCP segments retransmitted (the kernel\'s count)', attributes: KIND_TYPE },
  { name: 'tcp.connections.closed', type: 'counter', unit: '{connection}', description: 'TCP connection ends closed, by kind and close reason', attributes: [...KIND_TYPE, 'tcp.close.reason'] },
  // open connections (correlator.checkpointMs): counted before they close
  { name: 'tcp.connection.bytes', type: 'counter', unit: 'By', description: 'Payload bytes of TCP connection ends, counted at each checkpoint of an open end and at its close (rate: bytes/s, open ends included)', attributes: [...KIND_TYPE, 'network.io.direction'] },
  { name: 'tcp.connection.open.age', type: 'histogram', unit: 's', description: 'Ages of the TCP connection ends open at the collection (a snapshot per collection, not a running total: query it without rate())', attributes: KIND_TYPE, buckets: DURATION_BUCKETS },
  // tcpspan's own health (bridge-metrics.ts)
  { name: 'tcp.connections.opened', type: 'counter', unit: '{connection}', description: 'TCP connection ends seen', attributes: [] },
  { name: 'tcp.connections.active', type: 'updowncounter', unit: '{connection}', description: 'TCP connection ends open now', attributes: [] },
  { name: 'tcpspan.kernel.events', type: 'counter', unit: '{event}', description: 'Kernel records received by tcpspan', attributes: [] },
  { name: 'tcpspan.kernel.events.lost', type: 'counter', unit: '{event}', description: 'Kernel records lost before reaching tcpspan, by reason', attributes: ['reason'] },
  { name: 'tcpspan.events.dropped', type: 'counter', unit: '{event}', description: 'Kernel records the correlator could not use, by reason', attributes: ['reason'] },
  { name: 'tcpspan.spans.exported', type: 'counter', unit: '{span}', description: 'Spans accepted by the trace exporter', attributes: [] },
  { name: 'tcpspan.spans.dropped', type: 'counter', unit: '{span}', description: 'Spans dropped, by reason', attributes: ['reason'] },
  { name: 'tcpspan.service.lookups.failed', type: 'counter', unit: '{lookup}', description: 'Reads of a process\'s environment for its service name that failed, by reason', attributes: ['reason'] },
  { name: 'tcpspan.connections.close_lost', type: 'counter', unit: '{connection}', description: 'Open connection ends ended (incomplete, kernel_events_lost) because the kernel no longer held them after a ring overflow: their Close record was lost', attributes: [] },
  { name: 'tcpspan.spans.spooled', type: 'counter', unit: '{span}', description: 'Spans written to the export spool (export.spoolDir) while exports failed or at the shutdown deadline', attributes: [] },
  { name: 'tcpspan.spans.replayed', type: 'counter', unit: '{span}', description: 'Spans an earlier run left in the export spool, found at start (damaged ones included, also counted as dropped)', attributes: [] },
  { name: 'tcpspan.spool.spans', type: 'updowncounter', unit: '{span}', description: 'Spans in the export spool now, waiting for the collector', attributes: [] },
  { name: 'tcpspan.spool.usage', type: 'updowncounter', unit: 'By', description: 'Bytes the export spool\'s files take now (at most export.spoolMaxBytes)', attributes: [] },
  // SYN accounting and detection (detect-metrics.ts; detect.enabled)
  { name: 'tcp.syn.received', type: 'counter', unit: '{syn}', description: 'SYNs that reached a listening port (those it then dropped too), by port: the busiest detect.topPorts, the rest as other', attributes: ['network.local.port'] },
  { name: 'tcp.syn.half_open', type: 'gauge', unit: '{connection}', description: 'Half-open connections (SYN_RECV request sockets) of listening ports now, by port', attributes: ['network.local.port'] },
  { name: 'tcp.syn.queue_full', type: 'counter', unit: '{syn}', description: 'SYNs that found their listener\'s SYN queue full: answered with a SYN cookie, or dropped without syncookies, by port', attributes: ['network.local.port'] },
  { name: 'tcp.syn.synack_retransmits', type: 'counter', unit: '{segment}', description: 'SYN-ACKs retransmitted by listening ports (a handshake\'s last ACK late or missing), by port', attributes: ['network.local.port'] },
  { name: 'tcp.syn.refused', type: 'counter', unit: '{syn}', description: 'SYNs answered with RST because no socket listened on their port', attributes: [] },
  { name: 'tcp.syn.cookies.sent', type: 'counter', unit: '{syn}', description: 'SYN cookies sent (TcpExt SyncookiesSent), by network namespace', attributes: ['tcpspan.netns'] },
  { name: 'tcp.listen.overflows', type: 'counter', unit: '{syn}', description: 'SYNs and handshake ACKs dropped because an accept queue was full (TcpExt ListenOverflows), by network namespace', attributes: ['tcpspan.netns'] },
  { name: 'tcp.listen.drops', type: 'counter', unit: '{syn}', description: 'SYNs and handshake ACKs a listener dropped for any reason (TcpExt ListenDrops), by network namespace', attributes: ['tcpspan.netns'] },
  { name: 'tcpspan.detections', type: 'counter', unit: '{detection}', description: 'Detections made: tcp.syn_flood episodes and tcp.port_scan peers and windows, by kind', attributes: ['tcpspan.detection.kind'] },
  { name: 'tcpspan.detect.peers.evicted', type: 'counter', unit: '{peer}', description: 'Peers the port scan detector evicted from its full table before their window closed', attributes: [] },
  { name: 'tcpspan.spans.sampled_out', type: 'counter', unit: '{span}', description: 'Spans of healthy connection ends left out by sampling.ratio (not lost: the connection metrics count those ends)', attributes: [] },
];

export function metricSpec(name: string): MetricSpec {
  const m = METRICS.find((x) => x.name === name);
  if (!m) throw new Error(`no metric ${name} in METRICS`);
  return m;
}
