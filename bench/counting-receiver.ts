// An OTLP gRPC trace endpoint for benchmarks that counts spans and their end times without
// decoding whole messages: the test receiver's full decode (~54 us a span) would be the
// bottleneck at 40k spans/s. It walks ExportTraceServiceRequest -> ResourceSpans(2) ->
// ScopeSpans(2) -> Span.end_time_unix_nano(8, fixed64) and skips every other field.
//
// It runs in a child process of its own (startReceiverProcess), pinned to the CPU the caller
// names, so that neither the bench's orchestration nor tcpspan's core pays for it, and its own
// CPU time can be read apart.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import http2 from 'node:http2';
import { readFileSync } from 'node:fs';

export interface CountingReceiver {
  endpoint: string;
  /** Spans received so far. */
  count(): number;
  /** Close -> arrival latency of every span (ms), in arrival order. */
  latenciesMs(): number[];
  /** Spans received per wall-clock second (unix seconds -> count). */
  perSecond(): Map<number, number>;
  reset(): void;
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
  let latencies: number[] = [];
  let perSecond = new Map<number, number>();
  const server = http2.createServer({ settings: { initialWindowSize: WINDOW } });
  server.on('session', (session) => session.on('connect', () => session.setLocalWindowSize(WINDOW)));
  server.on('stream', (stream, headers) => {
    const chunks: Buffer[] = [];
    stream.on('data', (d: Buffer) => chunks.push(d));
    stream.on('end', () => {
      // metrics are acknowledged (tcpspan exports them at shutdown) but not counted
      const traces = headers[':path'] === '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
      const ok = traces || headers[':path'] === '/opentelemetry.proto.collector.metrics.v1.MetricsService/Export';
      if (traces) {
        const body = Buffer.concat(chunks);
        const nowMs = performance.timeOrigin + performance.now();
        const now = BigInt(Math.round(nowMs * 1e6));
        let n = 0;
        // 5-byte gRPC prefix: compressed flag, big-endian length
        eachField(body, 5, 5 + body.readUInt32BE(1), 1, (rs, re) =>
          eachField(body, rs, re, 2, (ss, se) =>
            eachField(body, ss, se, 2, (s, e) =>
              eachField(body, s, e, 8, () => undefined, (at) => {
                latencies.push(Number(now - body.readBigUInt64LE(at)) / 1e6);
                n++;
              }))));
        const sec = Math.floor(nowMs / 1000);
        perSecond.set(sec, (perSecond.get(sec) ?? 0) + n);
      }
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': ok ? '0' : '12' }));
      stream.end(Buffer.alloc(5)); // an empty ExportTraceServiceResponse
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    endpoint: `http://127.0.0.1:${port}`,
    count: () => latencies.length,
    latenciesMs: () => latencies,
    perSecond: () => perSecond,
    reset: () => { latencies = []; perSecond = new Map(); },
    close: () => { server.close(); },
  };
}

// ---------------------------------------------------------------- as a child process

export interface ReceiverStats {
  count: number;
  /** close -> export latency percentiles, ms */
  p50Ms: number;
  p99Ms: number;
  /** [unix second, spans received in it], ascending */
  perSecond: [number, number][];
}

export interface ReceiverProcess {
  endpoint: string;
  pid: number;
  count(): Promise<number>;
  stats(): Promise<ReceiverStats>;
  reset(): Promise<void>;
  /** CPU (user + system) the receiver has used, ms. */
  cpuMs(): number;
  close(): Promise<void>;
}

type Request = { id: number; cmd: 'count' | 'stats' | 'reset' };

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Starts the receiver in a child process pinned to `cpu`. */
export async function startReceiverProcess(cpu: number): Promise<ReceiverProcess> {
  const child: ChildProcess = spawn('taskset', ['-c', String(cpu), process.execPath, __filename, '--child'],
    { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [hello] = (await Promise.race([
    once(child, 'message'),
    once(child, 'exit').then(() => { throw new Error('bench: the counting receiver exited before it listened'); }),
  ])) as [{ endpoint: string }];
  let next = 0;
  const waiting = new Map<number, (v: unknown) => void>();
  child.on('message', (m: { id?: number; value?: unknown }) => {
    if (m.id !== undefined) { waiting.get(m.id)?.(m.value); waiting.delete(m.id); }
  });
  const ask = <T>(cmd: Request['cmd']): Promise<T> => new Promise((resolve) => {
    const id = next++;
    waiting.set(id, resolve as (v: unknown) => void);
    child.send({ id, cmd } satisfies Request);
  });
  return {
    endpoint: hello.endpoint,
    pid: child.pid!,
    count: () => ask<number>('count'),
    stats: () => ask<ReceiverStats>('stats'),
    reset: () => ask<void>('reset'),
    cpuMs: () => {
      const stat = readFileSync(`/proc/${child.pid}/stat`, 'utf8');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      return ((Number(f[11]) + Number(f[12])) * 1000) / 100;
    },
    close: async () => {
      if (child.exitCode !== null) return;
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function childMain(): Promise<void> {
  const r = await startCountingReceiver();
  process.on('message', (m: Request) => {
    let value: unknown;
    if (m.cmd === 'count') value = r.count();
    else if (m.cmd === 'reset') r.reset();
    else {
      const sorted = Float64Array.from(r.latenciesMs()).sort();
      value = {
        count: sorted.length,
        p50Ms: percentile(Array.from(sorted), 50), p99Ms: percentile(Array.from(sorted), 99),
        perSecond: [...r.perSecond().entries()].sort((a, b) => a[0] - b[0]),
      } satisfies ReceiverStats;
    }
    process.send!({ id: m.id, value });
  });
  process.on('SIGTERM', () => { r.close(); process.exit(0); });
  process.on('disconnect', () => process.exit(0)); // the bench died: do not linger
  process.send!({ endpoint: r.endpoint });
}

if (require.main === module && process.argv.includes('--child')) {
  childMain().catch((err: unknown) => { console.error(err); process.exit(1); });
}
