// The HTTP/2 connection preface a client sends first (RFC 9113 3.4): h2c with prior
// knowledge, or h2 after TLS (then it is encrypted and never seen here).
import { ATTR_NETWORK_PROTOCOL_NAME, ATTR_NETWORK_PROTOCOL_VERSION } from '@opentelemetry/semantic-conventions';
import type { ProtocolAttributes } from './protocol-attributes.js';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

export function isHttp2Preface(b: Uint8Array): boolean {
  if (b.length < PREFACE.length) return false;
  for (let i = 0; i < PREFACE.length; i++) if (b[i] !== PREFACE[i]) return false;
  return true;
}

export function http2Attributes(b: Uint8Array): ProtocolAttributes | undefined {
  return isHttp2Preface(b) ? { [ATTR_NETWORK_PROTOCOL_NAME]: 'http', [ATTR_NETWORK_PROTOCOL_VERSION]: '2' } : undefined;
}
