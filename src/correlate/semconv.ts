// Attribute names tcpspan uses that are not in the stable semantic conventions.
//
// Section 1 copies incubating OpenTelemetry conventions (from
// @opentelemetry/semantic-conventions/incubating, v1.45.0), as the OpenTelemetry JS
// guidance asks: the incubating entry point may break in a minor release, a local
// copy cannot. test/correlator.test.ts checks the copies against the package.
//
// Section 2 names tcpspan's own attributes: no convention exists for them.

/* ---- 1. Incubating OpenTelemetry semantic conventions (experimental) ---- */

/**
 * Process identifier (PID).
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_PROCESS_PID = 'process.pid' as const;

/**
 * The name of the process executable. On Linux, the base name of /proc/[pid]/exe.
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_PROCESS_EXECUTABLE_NAME = 'process.executable.name' as const;

/**
 * Container ID: the runtime's id of the container (for Docker and containerd, 64 hex digits).
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_CONTAINER_ID = 'container.id' as const;

/**
 * The UID of the Pod.
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_K8S_POD_UID = 'k8s.pod.uid' as const;

/**
 * The state of the socket connection (values below).
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_NETWORK_CONNECTION_STATE = 'network.connection.state' as const;

/** @experimental values of {@link ATTR_NETWORK_CONNECTION_STATE} */
export const NETWORK_CONNECTION_STATE_VALUE_CLOSE_WAIT = 'close_wait' as const;
export const NETWORK_CONNECTION_STATE_VALUE_CLOSED = 'closed' as const;
export const NETWORK_CONNECTION_STATE_VALUE_CLOSING = 'closing' as const;
export const NETWORK_CONNECTION_STATE_VALUE_ESTABLISHED = 'established' as const;
export const NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_1 = 'fin_wait_1' as const;
export const NETWORK_CONNECTION_STATE_VALUE_FIN_WAIT_2 = 'fin_wait_2' as const;
export const NETWORK_CONNECTION_STATE_VALUE_LAST_ACK = 'last_ack' as const;
export const NETWORK_CONNECTION_STATE_VALUE_LISTEN = 'listen' as const;
export const NETWORK_CONNECTION_STATE_VALUE_SYN_RECEIVED = 'syn_received' as const;
export const NETWORK_CONNECTION_STATE_VALUE_SYN_SENT = 'syn_sent' as const;
export const NETWORK_CONNECTION_STATE_VALUE_TIME_WAIT = 'time_wait' as const;

/**
 * Normalized lowercase protocol name parsed from original string of the negotiated SSL/TLS protocol version.
 * tcpspan sets `tls` from a ClientHello.
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_TLS_PROTOCOL_NAME = 'tls.protocol.name' as const;

/**
 * Numeric part of the version parsed from the original string of the negotiated SSL/TLS protocol version.
 * tcpspan sets the highest version the ClientHello offers (it does not read the server's answer).
 * @experimental incubating in the OpenTelemetry semantic conventions.
 */
export const ATTR_TLS_PROTOCOL_VERSION = 'tls.protocol.version' as const;

/* ---- 2. tcpspan's own attributes (no OpenTelemetry convention exists) ---- */

// Span attributes (documented in the table at the top of span-data.ts)
export const ATTR_TCP_CLOSE_REASON = 'tcp.close.reason' as const;
export const ATTR_TCP_CLOSE_INITIATOR = 'tcp.close.initiator' as const;
export const ATTR_TCP_RETRANSMITS = 'tcp.retransmits' as const;
export const ATTR_TCP_HANDSHAKE_DURATION = 'tcp.handshake.duration' as const;
export const ATTR_TCP_RTT_MIN = 'tcp.rtt.min' as const;
export const ATTR_TCP_RTT_AVG = 'tcp.rtt.avg' as const;
export const ATTR_TCP_RTT_MAX = 'tcp.rtt.max' as const;
export const ATTR_TCP_RTT_SAMPLES = 'tcp.rtt.samples' as const;
export const ATTR_TCP_RTT_SMOOTHED = 'tcp.rtt.smoothed' as const;
export const ATTR_TCP_BYTES_SENT = 'tcp.bytes.sent' as const;
export const ATTR_TCP_BYTES_RECEIVED = 'tcp.bytes.received' as const;
export const ATTR_TCP_SEGMENTS_SENT = 'tcp.segments.sent' as const;
export const ATTR_TCP_SEGMENTS_RECEIVED = 'tcp.segments.received' as const;
export const ATTR_TCPSPAN_NETNS = 'tcpspan.netns' as const;
export const ATTR_TCPSPAN_SOCKET_COOKIE = 'tcpspan.socket.cookie' as const;
export const ATTR_TCPSPAN_OPEN_BEFORE_START = 'tcpspan.open_before_start' as const;
export const ATTR_TCPSPAN_KERNEL_EVENTS_LOST = 'tcpspan.kernel_events_lost' as const;
export const ATTR_TCPSPAN_EVICTED = 'tcpspan.evicted' as const;
export const ATTR_TCPSPAN_RETRANSMITS_FAILED = 'tcpspan.retransmits.failed' as const;

// Span event names and their attributes
export const EVENT_TCP_STATE_CHANGE = 'tcp.state_change' as const;
export const EVENT_TCP_RETRANSMIT = 'tcp.retransmit' as const;
export const EVENT_TCP_RESET_RECEIVED = 'tcp.reset_received' as const;
export const EVENT_TCP_RESET_SENT = 'tcp.reset_sent' as const;
export const EVENT_TCP_ERROR = 'tcp.error' as const;
export const ATTR_TCP_RETRANSMIT_TYPE = 'tcp.retransmit.type' as const;
export const ATTR_TCP_RETRANSMIT_SENT = 'tcp.retransmit.sent' as const;
export const ATTR_TCP_RETRANSMIT_SEGMENTS = 'tcp.retransmit.segments' as const;
export const ATTR_TCP_RETRANSMIT_ERROR = 'tcp.retransmit.error' as const;
export const ATTR_TCP_ERROR_CODE = 'tcp.error.code' as const;

