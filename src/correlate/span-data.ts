/**
 * A finished connection end as a plain span, independent of any OpenTelemetry SDK.
 *
 * Span: name `tcp.connection`; kind `client` (this host connected), `server` (it
 * accepted) or `internal` (tcpspan did not see the connection open). Times are the
 * SDK's HrTime, [seconds, nanoseconds] since the Unix epoch: exact with Numbers,
 * where one Number of nanoseconds would round to 256 ns.
 *
 * Status: `error` for the close reasons refused, timeout, reset_received,
 * reset_sent, and for aborted when an errno ended the connection (EHOSTUNREACH, ...);
 * `unset` otherwise.
 *
 * Attributes (stable semantic conventions first; * = only when known, or only when true / non-zero):
 *
 * | Attribute                    | Type    | Unit | Meaning |
 * |------------------------------|---------|------|---------|
 * | `network.transport`          | string  |      | always `tcp` |
 * | `network.type`               | string  |      | `ipv4` or `ipv6` (IPv4-mapped addresses on dual-stack sockets are `ipv6`) |
 * | `network.local.address`      | string  |      | this end's address |
 * | `network.local.port`         | int     |      | this end's port |
 * | `network.peer.address`       | string  |      | the other end's address, as this host sees it (after NAT) |
 * | `network.peer.port`          | int     |      | the other end's port |
 * | `error.type`*                | string  |      | with status error: the errno name (`ECONNREFUSED`, `ETIMEDOUT`, `ECONNRESET`, ...), else the close reason |
 * | `process.pid`*               | int     |      | client: the process that connected; server: the process that accepted (else the first to close it) (incubating) |
 * | `process.executable.name`*   | string  |      | that process's executable name, ≤ 15 bytes (incubating) |
 * | `tcp.close.reason`           | string  |      | `fin`, `reset_received`, `reset_sent`, `refused`, `timeout`, `aborted`, `incomplete` |
 * | `tcp.close.initiator`*       | string  |      | `local` or `peer`: whose FIN (else RST, refusal, timeout) started the end; absent when both FINs crossed or unknown |
 * | `tcp.handshake.duration`*    | double  | s    | client: SYN sent to ESTABLISHED; server: SYN arrived to ESTABLISHED |
 * | `tcp.retransmits`            | int     |      | segments retransmitted and counted by the kernel (SYN, SYN-ACK, data, FIN) |
 * | `tcp.rtt.min`*               | double  | s    | smallest smoothed RTT sampled on the receive path |
 * | `tcp.rtt.avg`*               | double  | s    | mean of those samples |
 * | `tcp.rtt.max`*               | double  | s    | largest of those samples |
 * | `tcp.rtt.samples`*           | int     |      | number of samples (segments received with an RTT estimate) |
 * | `tcp.rtt.smoothed`*          | double  | s    | the kernel's smoothed RTT at the end |
 * | `tcp.bytes.sent`*            | int     | By   | payload bytes sent and acknowledged (bytes_acked without SYN and FIN) |
 * | `tcp.bytes.received`*        | int     | By   | payload bytes received in order (bytes_received without FIN) |
 * | `tcp.segments.sent`*         | int     |      | segments sent, control segments and retransmissions included (segs_out) |
 * | `tcp.segments.received`*     | int     |      | segments received, control segments included (segs_in) |
 * | `tcpspan.netns`              | int     |      | network namespace inode (as in /proc/PID/ns/net) |
 * | `tcpspan.socket.cookie`      | int     |      | the kernel's socket cookie (SO_COOKIE), unique per socket |
 * | `tcpspan.open_before_start`* | boolean |      | true: open when tcpspan started; start time is the first event seen |
 * | `tcpspan.kernel_events_lost`*| boolean |      | true: the kernel dropped events while this connection was tracked |
 * | `tcpspan.evicted`*           | boolean |      | true: ended early (incomplete) to bound tcpspan's memory |
 * | `tcpspan.retransmits.failed`*| int     |      | retransmit attempts the kernel did not send (e.g. EBUSY: the segment was still queued) |
 *
 * Sources and cost (README, "Who used each connection"): `process.*` are taken in the kernel in
 * process context only: connect (SYN_SENT), accept (syscalls:sys_exit_accept4 / sys_exit_accept,
 * once per accepted connection), else close (FIN_WAIT1, LAST_ACK); io_uring accepts and sockets
 * passed to other processes (SCM_RIGHTS, fork) keep the accepter or connecter, or none.
 *
 * Whose span it is (SpanOwner) is not an attribute: `service.name` (from the process),
 * `container.id` and `k8s.pod.uid` (from the socket's cgroup v2, src/attribute/) describe the
 * application, so semantic conventions make them resource attributes, and the Collector's
 * k8s_attributes processor looks pods up only by those. The exporters put each span under
 * tcpspan's resource with its owner's (export/owner-resource.ts).
 *
 * With inspect.protocols, what the first bytes say (README "Payload inspection"): `network.protocol.name`,
 * `network.protocol.version`, `http.request.method` (`http.request.method_original`), `tls.protocol.name`,
 * `tls.protocol.version`, `server.address` (the TLS SNI), `db.system.name`, `db.operation.name`.
 * With inspect.traceparent, span links: one per HTTP/1.x request with a valid traceparent header
 * (at most maxLinksPerSpan; the rest counted in droppedLinksCount).
 *
 * Span events (at most maxEventsPerSpan; the rest counted in droppedEventsCount):
 *
 * | Event                | Attributes |
 * |----------------------|------------|
 * | `tcp.state_change`   | `network.connection.state`: the state entered (`syn_sent`, `syn_received`, `established`, `fin_wait_1`, `fin_wait_2`, `close_wait`, `last_ack`, `closing`, `time_wait`, `closed`) |
 * | `tcp.retransmit`     | `network.connection.state`; `tcp.retransmit.type`: `syn`, `syn_ack`, `data`, `fin`; `tcp.retransmit.sent`: false when the transmit failed; `tcp.retransmit.segments`; `tcp.retransmit.error`* (errno name, when not sent) |
 * | `tcp.reset_received` | `network.connection.state` |
 * | `tcp.reset_sent`     | `network.connection.state` |
 * | `tcp.error`          | `error.type`: errno name; `tcp.error.code`: errno |
 */
import { NETWORK_TRANSPORT_VALUE_TCP, NETWORK_TYPE_VALUE_IPV4, NETWORK_TYPE_VALUE_IPV6 } from '@opentelemetry/semantic-conventions';
import type { AttributeValue, CloseReason, ConnectionRecord, SpanLinkData } from './connection-record.js';
import { isErrorClose } from './close-rules.js';
import type { CheckpointRecord } from './checkpoint.js';

export const SPAN_NAME = 'tcp.connection';
/** A checkpoint of an end still open (correlator.checkpointMs): a child of its `tcp.connection` span. */
export const CHECKPOINT_SPAN_NAME = 'tcp.connection.checkpoint';

/** Unix-epoch time as [seconds, nanoseconds], the SDK's HrTime: exact with Numbers. */
export type HrTime = [number, number];

export interface SpanEventData {
  name: string;
  time: HrTime;
  attributes: Record<string, AttributeValue>;
}

export interface SpanData {
  /** `tcp.connection`; detections (src/detect/) have their own names */
  name: string;
  kind: 'client' | 'server' | 'internal';
  traceId: string;
  spanId: string;
  /** present on server spans and checkpoints only */
  parentSpanId?: string;
  /** W3C tracestate, present when sampling kept the span (`ot=th:…`, pipeline/sampler.ts) */
  traceState?: string;
  startTime: HrTime;
  endTime: HrTime;
  attributes: Record<string, AttributeValue>;
  events: SpanEventData[];
  droppedEventsCount: number;
  status: { code: 'unset' | 'error'; message?: string };
  /** inspect.traceparent only: the span contexts of the requests the connection carried (remote spans) */
  links?: SpanLinkData[];
  droppedLinksCount?: number;
  /** Whose connection end it is (attribute/span-owner.ts); absent: tcpspan's own resource. */
  owner?: SpanOwner;
}

/**
 * The application a span belongs to, exported as resource attributes (export/owner-resource.ts):
 * at least one of the three is known. Interned: equal owners are one object, with one key.
 */
export interface SpanOwner {
  /** the same string for equal owners, different for different ones: what exporters group by */
  readonly key: string;
  /** service.name its process names itself (attribute/process-service.ts) */
  readonly serviceName?: string;
  /** container.id of the socket's cgroup (attribute/container-id.ts) */
  readonly containerId?: string;
  /** k8s.pod.uid of the socket's cgroup */
  readonly podUid?: string;
}

const ERROR_MESSAGES: Partial<Record<CloseReason, string>> = {
  refused: 'connection refused',
  timeout: 'connection timed out',
  reset_received: 'connection reset by peer',
  reset_sent: 'connection reset by this end',
  aborted: 'connection aborted',
};

/**
 * CLOCK_MONOTONIC nanoseconds to Unix-epoch HrTime, through one offset between the two
 * clocks read once (createClock() in decode/format.ts): a Number near 1.7e18 is a multiple
 * of 256, so converting each time would round each time, while the offset split into
 * seconds and nanoseconds plus a monotonic time (< 2^53) keeps each nanosecond.
 */
export interface EpochOffset {
  readonly sec: number;
  readonly ns: number;
}

export function epochOffset(toEpochNs: (mono: number) => number): EpochOffset {
  const off = toEpochNs(0);
  const sec = Math.floor(off / 1e9);
  return { sec, ns: Math.round(off - sec * 1e9) };
}

export function monoToHrTime(mono: number, off: EpochOffset): HrTime {
  const t = off.ns + Math.round(mono);
  const s = Math.floor(t / 1e9);
  return [off.sec + s, t - s * 1e9];
}

/** The span of one connection end; `traceState` when sampling kept it. */
export function toSpanData(rec: ConnectionRecord, off: EpochOffset, traceState?: string): SpanData {
  const isError = isErrorClose(rec.closeReason, rec.errno);

  // One literal with the attributes every span has, in a fixed order, then the optional
  // ones: the object keeps V8's fast properties (computed keys added one by one turned
  // it into a dictionary, which cost ~2 µs per span to build and to walk). The names are
  // the constants' values (ATTR_NETWORK_TRANSPORT, semconv.ts's ATTR_TCP_CLOSE_REASON, ...),
  // checked against them by test/span-data.test.ts.
  const a: Record<string, AttributeValue> = {
    'network.transport': NETWORK_TRANSPORT_VALUE_TCP,
    'network.type': rec.family === 'ipv4' ? NETWORK_TYPE_VALUE_IPV4 : NETWORK_TYPE_VALUE_IPV6,
    'network.local.address': rec.localAddress,
    'network.local.port': rec.localPort,
    'network.peer.address': rec.peerAddress,
    'network.peer.port': rec.peerPort,
    'tcp.close.reason': rec.closeReason,
    'tcp.retransmits': rec.retransmits,
    'tcpspan.netns': rec.netns,
    'tcpspan.socket.cookie': rec.cookie,
  };
  if (isError) a['error.type'] = rec.errorName ?? rec.closeReason;
  if (rec.pid !== undefined) a['process.pid'] = rec.pid;
  if (rec.executableName !== undefined) a['process.executable.name'] = rec.executableName;
  if (rec.closeInitiator !== undefined) a['tcp.close.initiator'] = rec.closeInitiator;
  if (rec.handshakeNs !== undefined) a['tcp.handshake.duration'] = rec.handshakeNs / 1e9;
  if (rec.rtt !== undefined) {
    a['tcp.rtt.min'] = rec.rtt.minUs / 1e6;
    a['tcp.rtt.avg'] = rec.rtt.avgUs / 1e6;
    a['tcp.rtt.max'] = rec.rtt.maxUs / 1e6;
    a['tcp.rtt.samples'] = rec.rtt.samples;
  }
  if (rec.srttUs !== undefined) a['tcp.rtt.smoothed'] = rec.srttUs / 1e6;
  if (rec.bytesSent !== undefined) a['tcp.bytes.sent'] = rec.bytesSent;
  if (rec.bytesReceived !== undefined) a['tcp.bytes.received'] = rec.bytesReceived;
  if (rec.segmentsSent !== undefined) a['tcp.segments.sent'] = rec.segmentsSent;
  if (rec.segmentsReceived !== undefined) a['tcp.segments.received'] = rec.segmentsReceived;
  if (rec.openBeforeStart) a['tcpspan.open_before_start'] = true;
  if (rec.kernelEventsLost) a['tcpspan.kernel_events_lost'] = true;
  if (rec.evicted) a['tcpspan.evicted'] = true;
  if (rec.retransmitsFailed > 0) a['tcpspan.retransmits.failed'] = rec.retransmitsFailed;
  if (rec.protocol !== undefined) Object.assign(a, rec.protocol);

  const events: SpanEventData[] = new Array(rec.events.length);
  for (let i = 0; i < events.length; i++) {
    const e = rec.events[i]!;
    events[i] = { name: e.name, time: monoToHrTime(e.timeNs, off), attributes: e.attributes };
  }
  const span: SpanData = {
    name: SPAN_NAME,
    kind: rec.kind === 'unknown' ? 'internal' : rec.kind,
    traceId: rec.traceId,
    spanId: rec.spanId,
    startTime: monoToHrTime(rec.startNs, off),
    endTime: monoToHrTime(rec.endNs, off),
    attributes: a,
    events,
    droppedEventsCount: rec.droppedEvents,
    status: isError
      ? { code: 'error', message: errorMessage(rec) }
      : { code: 'unset' },
  };
  if (rec.parentSpanId !== undefined) span.parentSpanId = rec.parentSpanId;
  if (traceState !== undefined) span.traceState = traceState;
  if (rec.links !== undefined) {
    span.links = rec.links;
    span.droppedLinksCount = rec.droppedLinks ?? 0;
  }
  return span;
}

/**
 * The span of one checkpoint of an open end (README "Checkpoints of long-lived connections"):
 * kind internal, a child of the end's `tcp.connection` span in its trace, from the previous
 * checkpoint (or the end's start) to now. Its counts are the interval's under the final span's
 * names, and the totals so far under the same names with `.total`; the RTT of the interval is the
 * mean of its samples (their minimum and maximum are the final span's, over the whole life).
 */
export function toCheckpointSpanData(cp: CheckpointRecord, off: EpochOffset, traceState?: string): SpanData {
  const i = cp.interval, t = cp.totals;
  const a: Record<string, AttributeValue> = {
    'network.transport': NETWORK_TRANSPORT_VALUE_TCP,
    'network.type': cp.family === 'ipv4' ? NETWORK_TYPE_VALUE_IPV4 : NETWORK_TYPE_VALUE_IPV6,
    'network.local.address': cp.localAddress,
    'network.local.port': cp.localPort,
    'network.peer.address': cp.peerAddress,
    'network.peer.port': cp.peerPort,
    'network.connection.state': cp.state,
    'tcpspan.checkpoint.sequence': cp.sequence,
    'tcp.bytes.sent': i.bytesSent,
    'tcp.bytes.received': i.bytesReceived,
    'tcp.segments.sent': i.segmentsSent,
    'tcp.segments.received': i.segmentsReceived,
    'tcp.retransmits': i.retransmits,
    'tcp.rtt.samples': i.rttSamples,
    'tcp.bytes.sent.total': t.bytesSent,
    'tcp.bytes.received.total': t.bytesReceived,
    'tcp.segments.sent.total': t.segmentsSent,
    'tcp.segments.received.total': t.segmentsReceived,
    'tcp.retransmits.total': t.retransmits,
    'tcpspan.netns': cp.netns,
    'tcpspan.socket.cookie': cp.cookie,
  };
  if (i.rttSamples > 0) a['tcp.rtt.avg'] = i.rttSumUs / i.rttSamples / 1e6;
  if (cp.srttUs !== undefined) a['tcp.rtt.smoothed'] = cp.srttUs / 1e6;
  if (cp.pid !== undefined) a['process.pid'] = cp.pid;
  if (cp.executableName !== undefined) a['process.executable.name'] = cp.executableName;
  const span: SpanData = {
    name: CHECKPOINT_SPAN_NAME,
    kind: 'internal',
    traceId: cp.traceId,
    spanId: cp.spanId,
    parentSpanId: cp.parentSpanId,
    startTime: monoToHrTime(cp.startNs, off),
    endTime: monoToHrTime(cp.endNs, off),
    attributes: a,
    events: [],
    droppedEventsCount: 0,
    status: { code: 'unset' },
  };
  if (traceState !== undefined) span.traceState = traceState;
  return span;
}

function errorMessage(rec: ConnectionRecord): string {
  const text = ERROR_MESSAGES[rec.closeReason] ?? rec.closeReason;
  return rec.errorName !== undefined ? `${text} (${rec.errorName})` : text;
}

/** Unix-epoch nanoseconds as HrTime (for tests and tools; the hot path never makes a bigint). */
export function toHrTime(unixNano: bigint): HrTime {
  return [Number(unixNano / 1_000_000_000n), Number(unixNano % 1_000_000_000n)];
}
