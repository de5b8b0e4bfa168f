// An HTTP/1.x request line (RFC 9112 3): its method and version. The target (path and
// query) is skipped and never kept.
import { ATTR_HTTP_REQUEST_METHOD, ATTR_HTTP_REQUEST_METHOD_ORIGINAL, ATTR_NETWORK_PROTOCOL_NAME, ATTR_NETWORK_PROTOCOL_VERSION } from '@opentelemetry/semantic-conventions';
import type { ProtocolAttributes } from './protocol-attributes.js';

/** The methods the semantic conventions know; any other token is `_OTHER`. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'CONNECT', 'OPTIONS', 'TRACE', 'PATCH', 'QUERY']);
const MAX_METHOD = 20;

function isTchar(c: number): boolean {
  // RFC 9110 5.6.2 token characters
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || '!#$%&\'*+-.^_`|~'.includes(String.fromCharCode(c));
}

export interface RequestLine {
  method: string;
  /** '1.0' or '1.1' */
  version: string;
}

/** The request line at the start of `b`; undefined unless it is a whole HTTP/1.x request line. */
export function parseRequestLine(b: Uint8Array): RequestLine | undefined {
  let p = 0;
  while (p < b.length && p <= MAX_METHOD && isTchar(b[p]!)) p++;
  if (p === 0 || p > MAX_METHOD || b[p] !== 0x20) return undefined;
  const method = String.fromCharCode(...b.subarray(0, p));
  const lf = b.indexOf(10, p);
  if (lf < 0) return undefined;
  const end = b[lf - 1] === 13 ? lf - 1 : lf;
  // "SP HTTP/1.x" ends the line; the target before it is not looked at
  if (end - p < 10 || b[end - 9] !== 0x20) return undefined;
  const v = String.fromCharCode(...b.subarray(end - 8, end));
  if (v !== 'HTTP/1.1' && v !== 'HTTP/1.0') return undefined;
  return { method, version: v.slice(5) };
}

export function http1Attributes(b: Uint8Array): ProtocolAttributes | undefined {
  const line = parseRequestLine(b);
  if (!line) return undefined;
  const known = KNOWN_METHODS.has(line.method);
  return {
    [ATTR_NETWORK_PROTOCOL_NAME]: 'http',
    [ATTR_NETWORK_PROTOCOL_VERSION]: line.version,
    [ATTR_HTTP_REQUEST_METHOD]: known ? line.method : '_OTHER',
    ...(!known && { [ATTR_HTTP_REQUEST_METHOD_ORIGINAL]: line.method }),
  };
}
