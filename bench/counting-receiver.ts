// An OTLP gRPC trace endpoint for benchmarks that counts spans and their end times without
// decoding whole messages: the test receiver's full decode (~54 us a span) would be the
// bottleneck at 40k spans/s. It walks ExportTraceServiceRequest -> ResourceSpans(2) ->
// ScopeSpans(2) -> Span.end_time_unix_nano(8, fixed64) and skips every other field.
import http2 from 'node:http2';

export interface CountingReceiver {
  endpoint: string;
  /** end_time_unix_nano of every span received, and when it arrived (unix ns). */
  endTimes: bigint[];
  arrivals: bigint[];
  close(): void;
}

function varint(b: Buffer, pos: number): [number, number] {
  let v = 0, shift = 0, byte: number;
  do {
    byte = b[pos++]!;
    v += (byte & 0x7f) * 2 ** shift;
    shift += 7;
  } while (byte & 0x80);
  return [v, pos];
}

/** Calls fn(start, end) for each length-delimited field `field` in b[start, end). */
function eachField(b: Buffer, start: number, end: number, field: number, fn: (s: number, e: number) => void, fixed64?: (at: number) => void): void {
  let pos = start;
  while (pos < end) {
    let key: number;
    [key, pos] = varint(b, pos);
    const f = Math.floor(key / 8), wire = key & 7;
    if (wire === 0) [, pos] = varint(b, pos);
    else if (wire === 1) { if (fixed64 && f === field) fixed64(pos); pos += 8; }
    else if (wire === 5) pos += 4;
    else if (wire === 2) {
      let len: number;
      [len, pos] = varint(b, pos);
      if (f === field) fn(pos, pos + len);
      pos += len;
    } else throw new Error(`counting receiver: unexpected wire type ${wire}`);
  }
}

export async function startCountingReceiver(): Promise<CountingReceiver> {
  const WINDOW = 16 << 20;
  const endTimes: bigint[] = [];
  const arrivals: bigint[] = [];
  const server = http2.createServer({ settings: { initialWindowSize: WINDOW } });
  server.on('session', (session) => session.on('connect', () => session.setLocalWindowSize(WINDOW)));
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      const ok = headers[':path'] === '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
      if (ok) {
        const body = Buffer.concat(chunks);
        const now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
        // 5-byte gRPC prefix: compressed flag, big-endian length
        eachField(body, 5, 5 + body.readUInt32BE(1), 1, (rs, re) =>
          eachField(body, rs, re, 2, (ss, se) =>
            eachField(body, ss, se, 2, (s, e) =>
              eachField(body, s, e, 8, () => undefined, (at) => { endTimes.push(body.readBigUInt64LE(at)); arrivals.push(now); }))));
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': ok ? '0' : '12' }));
      stream.end(Buffer.alloc(5)); // an empty ExportTraceServiceResponse
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { endpoint: `http://127.0.0.1:${port}`, endTimes, arrivals, close: () => { server.close(); } };
}
