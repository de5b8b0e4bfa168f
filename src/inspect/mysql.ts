// The greeting a MySQL or MariaDB server sends first (Protocol::HandshakeV10): packet
// header, protocol version 10, the server's version string.
import { ATTR_DB_SYSTEM_NAME, ATTR_NETWORK_PROTOCOL_NAME, ATTR_NETWORK_PROTOCOL_VERSION } from '@opentelemetry/semantic-conventions';
import type { ProtocolAttributes } from './protocol-attributes.js';

export function mysqlAttributes(b: Uint8Array): ProtocolAttributes | undefined {
  // 3-byte payload length, sequence id 0, protocol version 10
  if (b.length < 6 || b[3] !== 0 || b[4] !== 10) return undefined;
  const len = b[0]! | (b[1]! << 8) | (b[2]! << 16);
  if (len < 20 || len > 1024) return undefined;
  // the server version: printable ASCII up to a NUL
  const end = b.indexOf(0, 5);
  if (end < 6 || end > 5 + 100) return undefined;
  for (let i = 5; i < end; i++) if (b[i]! < 0x20 || b[i]! > 0x7e) return undefined;
  const version = Buffer.from(b.buffer, b.byteOffset + 5, end - 5).toString('latin1');
  return {
    [ATTR_DB_SYSTEM_NAME]: /mariadb/i.test(version) ? 'mariadb' : 'mysql',
    [ATTR_NETWORK_PROTOCOL_NAME]: 'mysql',
    [ATTR_NETWORK_PROTOCOL_VERSION]: '10',
  };
}
