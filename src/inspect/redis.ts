// A Redis client's first command as a RESP array of bulk strings (`*N\r\n$L\r\nNAME\r\n...`):
// the command's name (HELLO, AUTH, PING, ...). Its arguments are not kept.
import { ATTR_DB_OPERATION_NAME, ATTR_DB_SYSTEM_NAME, ATTR_NETWORK_PROTOCOL_NAME } from '@opentelemetry/semantic-conventions';
import type { ProtocolAttributes } from './protocol-attributes.js';

/** Reads `<prefix><digits>\r\n` at p; returns [value, next] or undefined. */
function counted(b: Uint8Array, p: number, prefix: number): [number, number] | undefined {
  if (b[p] !== prefix) return undefined;
  let v = 0, i = p + 1;
  for (; i < b.length && i < p + 8 && b[i]! >= 48 && b[i]! <= 57; i++) v = v * 10 + b[i]! - 48;
  if (i === p + 1 || b[i] !== 13 || b[i + 1] !== 10) return undefined;
  return [v, i + 2];
}

export function redisAttributes(b: Uint8Array): ProtocolAttributes | undefined {
  const arr = counted(b, 0, 0x2a /* * */);
  if (!arr || arr[0] < 1 || arr[0] > 1024) return undefined;
  const bulk = counted(b, arr[1], 0x24 /* $ */);
  if (!bulk || bulk[0] < 1 || bulk[0] > 32) return undefined;
  const [n, at] = bulk;
  if (at + n + 2 > b.length || b[at + n] !== 13 || b[at + n + 1] !== 10) return undefined;
  for (let i = at; i < at + n; i++) {
    const c = b[i]! | 0x20;
    if (c < 97 || c > 122) return undefined; // command names are letters
  }
  return {
    [ATTR_DB_SYSTEM_NAME]: 'redis',
    [ATTR_NETWORK_PROTOCOL_NAME]: 'redis',
    [ATTR_DB_OPERATION_NAME]: Buffer.from(b.buffer, b.byteOffset + at, n).toString('latin1').toUpperCase(),
  };
}
