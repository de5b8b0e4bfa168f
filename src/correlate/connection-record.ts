// One finished connection end: what the correlator hands to the export stage.
// Independent of any OpenTelemetry SDK; span-data.ts turns it into a span.
import type { CheckpointCounts } from './checkpoint.js';

/** Which end of the connection this host holds. 'unknown': tcpspan did not see it open. */
export type ConnectionKind = 'client' | 'server' | 'unknown';

/**
 * How the connection ended (rules in correlator.ts, "Close reason"):
 * - `fin`            orderly close, FINs exchanged
 * - `reset_received` the peer reset it (RST received, or closed with ECONNRESET)
 * - `reset_sent`     this end reset it (abortive close, SO_LINGER 0, close with unread data)
 * - `refused`        the connect was refused (RST answering the SYN, ECONNREFUSED)
 * - `timeout`        the kernel gave up retransmitting (SYN, data or keepalive: ETIMEDOUT)
 * - `aborted`        closed without FIN exchange or reset: the application gave up a
 *                    connect, or another error ended it (EHOSTUNREACH, ECONNABORTED, ...)
 * - `incomplete`     still open when tcpspan stopped watching (shutdown, eviction)
 */
export type CloseReason = 'fin' | 'reset_received' | 'reset_sent' | 'refused' | 'timeout' | 'aborted' | 'incomplete';

/** Who started ending the connection; undefined when unknown or simultaneous. */
export type CloseInitiator = 'local' | 'peer';

export type AttributeValue = string | number | boolean;

/** A span context this connection end links to (from a W3C traceparent header; inspect.traceparent). */
export interface SpanLinkData {
  traceId: string;
  spanId: string;
  /** W3C trace flags */
  flags: number;
}

/** A point in the connection's life (becomes a span event). */
export interface ConnectionEvent {
  name: string;
  /** CLOCK_MONOTONIC nanoseconds */
  timeNs: number;
  attributes: Record<string, AttributeValue>;
}

/** RTT summary of the smoothed-RTT samples taken on the receive path, microseconds. */
export interface RttSummary {
  samples: number;
  minUs: number;
  avgUs: number;
  maxUs: number;
}

/** Which connection end a record is about: its socket, kind and 5-tuple as this host sees it. */
export interface EndIdentity {
  /** socket cookie: unique per socket */
  cookie: number;
  kind: ConnectionKind;
  family: 'ipv4' | 'ipv6';
  localAddress: string;
  localPort: number;
  peerAddress: string;
  peerPort: number;
  /** network namespace inode */
  netns: number;
}

/**
 * A finished connection end. Every property is always present (undefined when
 * not known), so records compare whole; the payload ones at the end (inspect.*)
 * are present only when payload records gave them something.
 */
export interface ConnectionRecord extends EndIdentity {
  /** CLOCK_MONOTONIC ns: client SYN_SENT; server SYN arrival (fallback SYN_RECV); else the first event */
  startNs: number;
  /** CLOCK_MONOTONIC ns: the CLOSE (or TIME_WAIT) transition; for `incomplete`, when watching stopped */
  endNs: number;
  /** start to ESTABLISHED, ns; undefined when the handshake was not seen */
  handshakeNs: number | undefined;
  closeReason: CloseReason;
  closeInitiator: CloseInitiator | undefined;
  /** the errno that ended the connection (sk_err at CLOSE, else the first error report); 0: none */
  errno: number;
  /** its name (ECONNREFUSED, ...); undefined when errno is 0 */
  errorName: string | undefined;
  /** segments retransmitted and counted by the kernel (sent), SYN-ACK retransmits included */
  retransmits: number;
  /** retransmit attempts that were not sent (the transmit failed, e.g. EBUSY) */
  retransmitsFailed: number;
  rtt: RttSummary | undefined;
  /** the kernel's smoothed RTT at the last counters reading, µs */
  srttUs: number | undefined;
  /** payload bytes sent and acknowledged (bytes_acked without SYN and FIN; see correlator.ts) */
  bytesSent: number | undefined;
  /** payload bytes received in order (bytes_received without FIN) */
  bytesReceived: number | undefined;
  /** segments sent / received, control segments and retransmissions included (segs_out, segs_in) */
  segmentsSent: number | undefined;
  segmentsReceived: number | undefined;
  /** the process that accepted (server) or connected (client), else the first to close it */
  pid: number | undefined;
  executableName: string | undefined;
  /** the socket's cgroup v2 id (its directory's inode number), set by the kernel when the socket was made */
  cgroupId: number | undefined;
  /** container.id and k8s.pod.uid from that cgroup's path: filled by the attribution stage (src/attribute/) */
  containerId: string | undefined;
  podUid: string | undefined;
  /** open when tcpspan started: its start was never seen */
  openBeforeStart: boolean;
  /** the kernel lost events while this connection was tracked, or before its first event */
  kernelEventsLost: boolean;
  /** ended early to bound memory (closeReason is `incomplete`) */
  evicted: boolean;
  /** 32 lowercase hex digits */
  traceId: string;
  /** 16 lowercase hex digits */
  spanId: string;
  /** the server end's parent: the client end's span id */
  parentSpanId: string | undefined;
  events: ConnectionEvent[];
  /** events cut by the per-span cap */
  droppedEvents: number;
  /** inspect.traceparent: the requests' span contexts, at most maxLinksPerSpan, in order */
  links?: SpanLinkData[];
  /** requests whose link was over maxLinksPerSpan */
  droppedLinks?: number;
  /** inspect.protocols: what the first bytes said (network.protocol.name, ...) */
  protocol?: Record<string, AttributeValue>;
  /**
   * correlator.checkpointMs: the totals of the end's last checkpoint, and how many it had; present
   * only after one. The final span's totals minus these are what happened after it.
   */
  checkpointed?: CheckpointCounts & { count: number };
}
