// A TLS ClientHello (RFC 8446 4.1.2, RFC 5246 7.4.1.2): the highest version the client
// offers and the server name it asks for (SNI, RFC 6066 3). Read from the first bytes the
// client sent; a ClientHello longer than the copy (or than one segment) is read as far as
// it goes: what lies beyond is unknown, not guessed.
import { ATTR_SERVER_ADDRESS } from '@opentelemetry/semantic-conventions';
import { ATTR_TLS_PROTOCOL_NAME, ATTR_TLS_PROTOCOL_VERSION } from '../correlate/semconv.js';
import type { ProtocolAttributes } from './protocol-attributes.js';

const HANDSHAKE = 0x16, CLIENT_HELLO = 0x01;
const EXT_SERVER_NAME = 0, EXT_SUPPORTED_VERSIONS = 43;
const VERSIONS: Record<number, string> = { 0x0300: '3.0' /* SSL 3.0 */, 0x0301: '1.0', 0x0302: '1.1', 0x0303: '1.2', 0x0304: '1.3' };

export interface ClientHello {
  /** the highest version offered: from supported_versions, else the legacy client_version (when the extensions were read whole) */
  version?: string;
  /** the SNI host name */
  serverName?: string;
}

const isGrease = (v: number): boolean => (v & 0x0f0f) === 0x0a0a && (v >> 8) === (v & 0xff);

/** The ClientHello at the start of `b`, or undefined when `b` does not begin with one. */
export function parseClientHello(b: Uint8Array): ClientHello | undefined {
  // TLS record header, then the handshake header
  if (b.length < 11 || b[0] !== HANDSHAKE || b[1] !== 3 || b[2]! > 4 || b[5] !== CLIENT_HELLO) return undefined;
  const u16 = (p: number): number => (b[p]! << 8) | b[p + 1]!;
  const legacy = u16(9);
  if (!(legacy in VERSIONS)) return undefined;
  const hello: ClientHello = {};
  let p = 11 + 32; // client_version, random
  if (p >= b.length) return hello;
  p += 1 + b[p]!; // session id
  if (p + 2 > b.length) return hello;
  p += 2 + u16(p); // cipher suites
  if (p >= b.length) return hello;
  p += 1 + b[p]!; // compression methods
  if (p + 2 > b.length) return hello;
  const extEnd = p + 2 + u16(p);
  p += 2;
  let offered = 0;
  while (p + 4 <= Math.min(extEnd, b.length)) {
    const type = u16(p), len = u16(p + 2), data = p + 4;
    if (data + len > b.length) break; // cut: this extension and the rest are unknown
    if (type === EXT_SERVER_NAME) {
      // server_name_list: one host_name entry in practice
      if (len >= 5 && b[data + 2] === 0) {
        const n = u16(data + 3);
        if (data + 5 + n <= data + len) hello.serverName = Buffer.from(b.buffer, b.byteOffset + data + 5, n).toString('latin1');
      }
    } else if (type === EXT_SUPPORTED_VERSIONS && len >= 1) {
      const n = b[data]!;
      for (let i = data + 1; i + 1 < data + 1 + n && i + 1 < data + len; i += 2) {
        const v = u16(i);
        if (!isGrease(v) && v in VERSIONS && v > offered) offered = v;
      }
    }
    p = data + len;
  }
  if (offered) hello.version = VERSIONS[offered];
  else if (p >= extEnd) hello.version = VERSIONS[legacy]; // no supported_versions: the legacy field is the offer
  return hello;
}

export function tlsAttributes(b: Uint8Array): ProtocolAttributes | undefined {
  const hello = parseClientHello(b);
  if (!hello) return undefined;
  return {
    [ATTR_TLS_PROTOCOL_NAME]: 'tls',
    ...(hello.version !== undefined && { [ATTR_TLS_PROTOCOL_VERSION]: hello.version }),
    ...(hello.serverName !== undefined && { [ATTR_SERVER_ADDRESS]: hello.serverName }),
  };
}
