// Detections as spans: kind INTERNAL, a trace of their own (random ids), sent through the
// same sinks as connection spans. One span per scanning peer and window (tcp.port_scan),
// one per SYN flood episode (tcp.syn_flood); the evidence is in attributes.
//
// tcp.port_scan attributes:
// | Attribute                   | Type   | Meaning |
// |-----------------------------|--------|---------|
// | `source.address`            | string | the scanning peer, as this host sees it |
// | `network.type`              | string | `ipv4` or `ipv6` |
// | `tcpspan.netns`             | int    | the network namespace scanned |
// | `tcp.port_scan.ports`       | int    | distinct local ports that refused or never completed a handshake |
// | `tcp.port_scan.refused`     | int    | SYNs answered with RST by a closed port |
// | `tcp.port_scan.unanswered`  | int    | handshakes not completed: SYN-ACK retransmits, RSTs from the peer in the handshake |
// | `tcp.port_scan.port.low`    | int    | lowest of those ports |
// | `tcp.port_scan.port.high`   | int    | highest |
//
// tcp.syn_flood attributes:
// | Attribute                          | Type    | Meaning |
// |------------------------------------|---------|---------|
// | `network.local.port`               | int     | the listening port |
// | `tcpspan.netns`                    | int     | its network namespace |
// | `tcp.syn_flood.half_open.peak`     | int     | most half-open connections (SYN_RECV) seen |
// | `tcp.syn_flood.backlog`            | int     | the listener's backlog (its SYN and accept queues' limit) |
// | `tcp.syn_flood.syns`               | int     | SYNs the listener received in the episode |
// | `tcp.syn_flood.syns_per_second.peak` | int   | most SYNs/s over one interval |
// | `tcp.syn_flood.queue_full`         | int     | SYNs that found its SYN queue full (SYN cookies, or dropped without syncookies) |
// | `tcp.syn_flood.accept_queue_full`  | int     | SYNs that found its accept queue full (dropped) |
// | `tcp.syn_flood.synack_retransmits` | int     | SYN-ACKs it retransmitted |
// | `tcp.syn_flood.netns_syncookies_sent` | int  | the namespace's TcpExt SyncookiesSent over the episode (every listener in it) |
// | `tcp.syn_flood.top_sources`        | string  | the busiest sources while the SYN queue was at least half full: `address=SYNs`, comma-separated, busiest first, at most 5 |
// | `tcp.syn_flood.ongoing`*           | boolean | true: still going when tcpspan stopped |
import { randomTraceIdentity } from '../correlate/trace-id.js';
import { monoToHrTime, type EpochOffset, type SpanData } from '../correlate/span-data.js';
import type { AttributeValue } from '../correlate/connection-record.js';
import type { PortScan } from './port-scan.js';
import type { SynFlood } from './syn-flood.js';

export const PORT_SCAN_SPAN = 'tcp.port_scan';
export const SYN_FLOOD_SPAN = 'tcp.syn_flood';

function internalSpan(name: string, startNs: number, endNs: number, attributes: Record<string, AttributeValue>, off: EpochOffset): SpanData {
  const { traceId, spanId } = randomTraceIdentity();
  return {
    name, kind: 'internal', traceId, spanId, startTime: monoToHrTime(startNs, off), endTime: monoToHrTime(Math.max(startNs, endNs), off),
    attributes, events: [], droppedEventsCount: 0, status: { code: 'unset' },
  };
}

export function portScanSpan(s: PortScan, off: EpochOffset): SpanData {
  return internalSpan(PORT_SCAN_SPAN, s.startNs, s.endNs, {
    'source.address': s.address,
    'network.type': s.family,
    'tcpspan.netns': s.netns,
    'tcp.port_scan.ports': s.ports,
    'tcp.port_scan.refused': s.refused,
    'tcp.port_scan.unanswered': s.unanswered,
    'tcp.port_scan.port.low': s.lowPort,
    'tcp.port_scan.port.high': s.highPort,
  }, off);
}

export function synFloodSpan(f: SynFlood, off: EpochOffset): SpanData {
  const a: Record<string, AttributeValue> = {
    'network.local.port': f.port,
    'tcpspan.netns': f.netns,
    'tcp.syn_flood.half_open.peak': f.halfOpenPeak,
    'tcp.syn_flood.backlog': f.backlog,
    'tcp.syn_flood.syns': f.syns,
    'tcp.syn_flood.syns_per_second.peak': f.synsPerSecondPeak,
    'tcp.syn_flood.queue_full': f.queueFull,
    'tcp.syn_flood.accept_queue_full': f.acceptFull,
    'tcp.syn_flood.synack_retransmits': f.synackRetransmits,
    'tcp.syn_flood.netns_syncookies_sent': f.netnsCookiesSent,
    'tcp.syn_flood.top_sources': f.topSources.map((s) => `${s.address}=${s.syns}`).join(','),
  };
  if (f.ongoing) a['tcp.syn_flood.ongoing'] = true;
  return internalSpan(SYN_FLOOD_SPAN, f.startNs, f.endNs, a, off);
}
