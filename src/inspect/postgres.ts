// The first message a PostgreSQL client sends (protocol 3, "Message Formats"): a
// StartupMessage (protocol version), or an SSLRequest / GSSENCRequest before encryption.
// The parameters (user, database) are not kept.
import { ATTR_DB_SYSTEM_NAME, ATTR_NETWORK_PROTOCOL_NAME, ATTR_NETWORK_PROTOCOL_VERSION } from '@opentelemetry/semantic-conventions';
import type { ProtocolAttributes } from './protocol-attributes.js';

const SSL_REQUEST = 80877103, GSSENC_REQUEST = 80877104, CANCEL_REQUEST = 80877102;

export function postgresAttributes(b: Uint8Array): ProtocolAttributes | undefined {
  if (b.length < 8) return undefined;
  const dv = new DataView(b.buffer, b.byteOffset, b.length);
  const len = dv.getUint32(0), code = dv.getUint32(4);
  const base = { [ATTR_DB_SYSTEM_NAME]: 'postgresql', [ATTR_NETWORK_PROTOCOL_NAME]: 'postgresql' };
  if ((code === SSL_REQUEST || code === GSSENC_REQUEST) && len === 8) return base;
  if (code === CANCEL_REQUEST && len === 16) return base;
  const major = code >>> 16, minor = code & 0xffff;
  // a StartupMessage: version 3.x, parameters as NUL-terminated pairs, ending in one more NUL
  if (major !== 3 || minor > 16 || len < 9 || len > 10_000) return undefined;
  if (b.length >= len && b[len - 1] !== 0) return undefined;
  return { ...base, [ATTR_NETWORK_PROTOCOL_VERSION]: `3.${minor}` };
}
