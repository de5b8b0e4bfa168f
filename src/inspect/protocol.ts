// Protocol identification from the first payload of each direction of a connection
// (inspect.protocols): each parser is a pure function of those bytes, and a protocol
// nobody recognises gets no attribute at all.
//
// The client speaks first in HTTP/1.x, HTTP/2 (h2c with prior knowledge), TLS, PostgreSQL
// and Redis; the server speaks first in MySQL. What the client's first bytes say wins.
import { http1Attributes } from './http1.js';
import { http2Attributes } from './http2.js';
import { mysqlAttributes } from './mysql.js';
import { postgresAttributes } from './postgres.js';
import type { ProtocolAttributes } from './protocol-attributes.js';
import { redisAttributes } from './redis.js';
import { tlsAttributes } from './tls.js';

export type { ProtocolAttributes } from './protocol-attributes.js';

type Parser = (b: Uint8Array) => ProtocolAttributes | undefined;

// cheapest and most specific first: each looks at its first bytes and gives up at once
const FROM_CLIENT: readonly Parser[] = [tlsAttributes, http2Attributes, http1Attributes, postgresAttributes, redisAttributes];
const FROM_SERVER: readonly Parser[] = [mysqlAttributes];

function first(parsers: readonly Parser[], b: Uint8Array): ProtocolAttributes | undefined {
  if (b.length === 0) return undefined;
  for (const parse of parsers) {
    const a = parse(b);
    if (a) return a;
  }
  return undefined;
}

/** What the first bytes the client sent say; undefined: no protocol recognised. */
export function identifyFromClient(b: Uint8Array): ProtocolAttributes | undefined {
  return first(FROM_CLIENT, b);
}

/** What the first bytes the server sent say (protocols where the server speaks first). */
export function identifyFromServer(b: Uint8Array): ProtocolAttributes | undefined {
  return first(FROM_SERVER, b);
}
