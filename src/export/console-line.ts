// The console output of `tcpspan run` with no OTLP endpoint: one line per finished
// connection end, in the spirit of bcc's tcplife.
import type { ConnectionRecord } from '../correlate/connection-record.js';
import type { SpanData, SpanOwner } from '../correlate/span-data.js';

export const CONSOLE_HEADER =
  'TIME          KIND   PID     COMM            LOCAL -> PEER                                  DUR_MS  HS_MS   RTT_US RETR     TX_B     RX_B CLOSE';

function endpoint(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

function clock(epochMs: number): string {
  const d = new Date(epochMs);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}

const num = (n: number | undefined, width: number, digits = 0) =>
  (n === undefined ? '-' : digits ? n.toFixed(digits) : String(Math.round(n))).padStart(width);

/** Characters of a container id shown: as many as `docker ps` shows. */
const CONTAINER_ID_CHARS = 12;

/**
 * One readable line for one connection end; endEpochMs is the close time on the wall clock.
 * Its owner (SpanData.owner), when known, ends the line: `service=NAME` (the service its process
 * named), then `container=ID` (the first 12 hex digits of its container.id, as `docker ps` shows).
 */
export function formatConsoleLine(rec: ConnectionRecord, endEpochMs: number, owner?: SpanOwner): string {
  const serviceName = owner?.serviceName, containerId = owner?.containerId;
  const tuple = `${endpoint(rec.localAddress, rec.localPort)} -> ${endpoint(rec.peerAddress, rec.peerPort)}`;
  const close = rec.closeInitiator ? `${rec.closeReason}(${rec.closeInitiator})` : rec.closeReason;
  const flags = [rec.openBeforeStart && 'open-before-start', rec.kernelEventsLost && 'events-lost', rec.evicted && 'evicted']
    .filter(Boolean).join(',');
  return [
    clock(endEpochMs),
    rec.kind.padEnd(6),
    (rec.pid === undefined ? '-' : String(rec.pid)).padEnd(7),
    (rec.executableName ?? '-').padEnd(15),
    tuple.padEnd(46),
    num((rec.endNs - rec.startNs) / 1e6, 7, 2),
    num(rec.handshakeNs === undefined ? undefined : rec.handshakeNs / 1e6, 6, 2),
    num(rec.rtt?.avgUs ?? rec.srttUs, 8),
    num(rec.retransmits, 4),
    num(rec.bytesSent, 8),
    num(rec.bytesReceived, 8),
    flags ? `${close} [${flags}]` : close,
    // another process's text: quoted when it could break the line or the columns
    ...(serviceName === undefined ? [] : [`service=${/^[\x21-\x7e]+$/.test(serviceName) ? serviceName : JSON.stringify(serviceName)}`]),
    ...(containerId === undefined ? [] : [`container=${containerId.slice(0, CONTAINER_ID_CHARS)}`]),
  ].join(' ');
}

/**
 * One line for a detection (tcp.port_scan, tcp.syn_flood): its end time, `detect`, its name,
 * then its evidence as key=value (attribute names without the span name's prefix).
 */
export function formatDetectionLine(span: SpanData): string {
  const prefix = `${span.name}.`;
  const evidence = Object.entries(span.attributes)
    .map(([k, v]) => `${k.startsWith(prefix) ? k.slice(prefix.length) : k}=${typeof v === 'string' && /\s/.test(v) ? JSON.stringify(v) : v}`);
  const dur = ((span.endTime[0] - span.startTime[0]) + (span.endTime[1] - span.startTime[1]) / 1e9).toFixed(1);
  return [clock(span.endTime[0] * 1000 + Math.floor(span.endTime[1] / 1e6)), 'detect', span.name, `duration_s=${dur}`, ...evidence].join(' ');
}
