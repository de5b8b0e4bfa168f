// The export ceiling: how many connection spans per second one Node thread turns into
// OTLP gRPC requests (SpanData -> SpanExportQueue -> tcpspan's OTLP gRPC exporter, or for
// comparison the SDK's path: toReadableSpan -> OTLPTraceExporter), and what each costs in
// CPU. Prints figures, asserts nothing.
//
//   node dist/bench/export-ceiling.js [SPANS [decoding|null]]    (default 200000, both)
//
// The runner measures against two receivers, each in a child process pinned to CPU 0
// when taskset exists (so it neither shares this thread nor counts in its CPU): the
// test receiver (test/support/otlp-receiver.ts, decoding every request with
// protobufjs), and a null one that acknowledges without decoding, which shows the
// exporter's own ceiling. Run this process on the other core (`taskset -c 1 node ...`).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-grpc';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import { toHrTime, type SpanData, type SpanEventData } from '../src/correlate/span-data.js';
import { toReadableSpan } from '../src/export/readable-span.js';
import { createOtlpGrpcSpanExporter } from '../src/export/otlp-grpc-span-exporter.js';
import { createSpanExportQueue, type BatchExporter } from '../src/export/span-export-queue.js';

/** The SDK's path, for comparison: a ReadableSpan per span, then the SDK's serializer. */
function sdkPath(exporter: SpanExporter, resource: Resource, scope: InstrumentationScope): BatchExporter<SpanData> {
  return {
    export: (spans, cb) => exporter.export(spans.map((d) => toReadableSpan(d, resource, scope)), cb),
    shutdown: () => exporter.shutdown(),
  };
}

export interface ExportCeiling {
  spansPerSec: number;
  /** CPU (user + system, all threads of this process) per 1000 spans exported */
  cpuMsPer1000: number;
  dropped: number;
}

const MAX_QUEUE = 65_536;
const BATCH = 2048;
/** spans produced between two yields to the event loop, as a ring drain would hand them over */
const CHUNK = 1024;
const T0 = 1_763_000_000_000_000_000n;

/** A client connection span as span-data.ts builds them: 15 attributes, 6 events. */
export function connectionSpan(i: number): SpanData {
  const start = T0 + BigInt(i) * 50_000n;
  const st = (dt: bigint, s: string): SpanEventData =>
    ({ name: 'tcp.state_change', time: toHrTime(start + dt), attributes: { 'network.connection.state': s } });
  return {
    name: 'tcp.connection', kind: 'client',
    traceId: (0xa3ce929d0e0e47364bf92f3500000000n + BigInt(i)).toString(16),
    spanId: (0x1000_0000_0000_0000n + BigInt(i)).toString(16),
    startTime: toHrTime(start), endTime: toHrTime(start + 1_250_000n),
    attributes: {
      'network.transport': 'tcp', 'network.type': 'ipv4',
      'network.local.address': '10.0.0.1', 'network.local.port': 10_000 + (i % 50_000),
      'network.peer.address': '10.0.0.2', 'network.peer.port': 443,
      'process.pid': 4242, 'process.executable.name': 'curl',
      'tcp.close.reason': 'fin', 'tcp.close.initiator': 'local', 'tcp.handshake.duration': 0.000118,
      'tcp.retransmits': 0, 'tcp.rtt.smoothed': 0.000061,
      'tcpspan.netns': 4026531840, 'tcpspan.socket.cookie': 81_237 + i,
    },
    events: [
      st(0n, 'syn_sent'), st(118_000n, 'established'), st(1_100_000n, 'fin_wait_1'),
      st(1_150_000n, 'fin_wait_2'), st(1_200_000n, 'time_wait'),
      {
        name: 'tcp.retransmit', time: toHrTime(start + 500_000n),
        attributes: {
          'network.connection.state': 'established', 'tcp.retransmit.type': 'data',
          'tcp.retransmit.sent': true, 'tcp.retransmit.segments': 1,
        },
      },
    ],
    droppedEventsCount: 0,
    status: { code: 'unset' },
  };
}

/**
 * Pushes `spans` synthetic connection spans through the export path to `endpoint` as
 * fast as the queue takes them: when it is full, waits on a short flush rather than
 * dropping. Measured from the first span to the last export's acknowledgement.
 */
export async function exportCeiling(opts: { spans: number; endpoint: string; path?: 'tcpspan' | 'sdk' }): Promise<ExportCeiling> {
  const resource = resourceFromAttributes({ 'service.name': 'tcpspan-bench', 'host.name': 'bench' });
  const scope = { name: 'tcpspan', version: '0.1.0' };
  // tcpspan's path queues each span's protobuf bytes, as `tcpspan run` does; the SDK's queues spans
  let exporter: BatchExporter<unknown>, prepare: (s: SpanData) => unknown;
  if (opts.path === 'sdk') {
    exporter = sdkPath(new OTLPTraceExporter({ url: opts.endpoint, timeoutMillis: 30_000 }), resource, scope) as BatchExporter<unknown>;
    prepare = (s) => s;
  } else {
    const otlp = createOtlpGrpcSpanExporter({ url: opts.endpoint, timeoutMillis: 30_000 }, resource, scope);
    exporter = otlp.exporter as BatchExporter<unknown>;
    prepare = otlp.encode as (s: SpanData) => unknown;
  }
  const queue = createSpanExportQueue(exporter, {
    maxQueueSize: MAX_QUEUE, maxExportBatchSize: BATCH, scheduledDelayMs: 200, exportTimeoutMs: 30_000,
    maxRetries: 5, retryInitialDelayMs: 100, log: (m) => process.stderr.write(`export-ceiling: ${m}\n`),
  });
  const held = (): number => { const s = queue.stats(); return s.queued + s.inFlight; };

  // warm-up outside the measurement: JIT, the gRPC connection
  for (let i = 0; i < BATCH; i++) queue.offer(() => prepare(connectionSpan(i)));
  await queue.forceFlush(30_000);

  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  let made = 0;
  while (made < opts.spans) {
    while (held() + CHUNK > MAX_QUEUE) await queue.forceFlush(2);
    const end = Math.min(opts.spans, made + CHUNK);
    for (; made < end; made++) queue.offer(() => prepare(connectionSpan(BATCH + made)));
    await new Promise<void>((r) => setImmediate(r));
  }
  await queue.forceFlush(120_000);
  const wallNs = Number(process.hrtime.bigint() - t0);
  const cpu = process.cpuUsage(cpu0);
  const s = queue.stats();
  await queue.shutdown(5000);

  const exported = s.exported - BATCH;
  const dropped = Object.values(s.dropped).reduce((a, b) => a + b, 0);
  return {
    spansPerSec: Math.round(exported / (wallNs / 1e9)),
    cpuMsPer1000: Math.round(((cpu.user + cpu.system) / 1000 / exported) * 1000 * 100) / 100,
    dropped,
  };
}

// ---------------------------------------------------------------- runner

/**
 * A gRPC trace service that acknowledges without decoding: the collector side of the
 * exporter's ceiling. (The test receiver decodes with protobufjs at ≈ 50 µs a span,
 * slower than the exporter encodes, so against it one measures the receiver.)
 * Plain node:http2 rather than a grpc-js server, because grpc-js servers keep HTTP/2's
 * 64 KiB flow-control windows: a 3 MB request then crawls through ≈ 50 window updates,
 * where a Go collector grows its windows (BDP estimation) to megabytes.
 */
async function startNullReceiver(): Promise<{ endpoint: string; received: () => number; close: () => void }> {
  const http2 = await import('node:http2');
  const WINDOW = 16 << 20;
  const server = http2.createServer({ settings: { initialWindowSize: WINDOW } });
  let requests = 0;
  server.on('session', (session) => session.on('connect', () => session.setLocalWindowSize(WINDOW)));
  server.on('stream', (stream, headers) => {
    stream.on('data', () => undefined);
    stream.on('end', () => {
      const ok = headers[':path'] === '/opentelemetry.proto.collector.trace.v1.TraceService/Export';
      if (ok) requests++;
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.on('wantTrailers', () => stream.sendTrailers({ 'grpc-status': ok ? '0' : '12' }));
      stream.end(Buffer.alloc(5)); // one uncompressed, empty ExportTraceServiceResponse
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return { endpoint: `http://127.0.0.1:${port}`, received: () => requests, close: () => { server.close(); } };
}

async function receiverChild(kind: 'decoding' | 'null'): Promise<void> {
  let endpoint: string;
  let received: () => number;
  let close: () => Promise<void> | void;
  if (kind === 'null') {
    ({ endpoint, received, close } = await startNullReceiver());
  } else {
    const { startOtlpReceiver } = await import('../test/support/otlp-receiver.js');
    const r = await startOtlpReceiver();
    ({ endpoint } = r);
    received = () => r.spans().length;
    close = () => r.close();
  }
  process.send?.({ endpoint });
  process.on('message', async () => {
    const cpu = process.cpuUsage();
    process.send?.({ received: received(), cpuMs: Math.round((cpu.user + cpu.system) / 1000) });
    await close();
    process.exit(0);
  });
}

async function measure(kind: 'decoding' | 'null', spans: number, pinned: boolean, path: 'tcpspan' | 'sdk'): Promise<void> {
  const args = [__filename, '--receiver', kind];
  const child: ChildProcess = pinned
    ? spawn('taskset', ['-c', '0', process.execPath, ...args], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
    : spawn(process.execPath, args, { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const [hello] = (await once(child, 'message')) as [{ endpoint: string }];
  const result = await exportCeiling({ spans, endpoint: hello.endpoint, path });
  child.send('done');
  const [bye] = (await once(child, 'message')) as [{ received: number; cpuMs: number }];
  const what = kind === 'null' ? 'requestsAcked' : 'spansDecoded';
  console.log(JSON.stringify({
    path, receiver: kind, spans, ...result, [what]: bye.received, receiverCpuMs: bye.cpuMs, receiverPinnedToCpu0: pinned,
  }));
}

/** Both receivers unless one is named, tcpspan's path unless `sdk`: `export-ceiling.js [SPANS] [decoding|null] [tcpspan|sdk]`. */
async function main(): Promise<void> {
  const spans = Number(process.argv[2] ?? 200_000);
  const only = process.argv[3];
  const path = process.argv[4] === 'sdk' ? 'sdk' : 'tcpspan';
  const pinned = spawnSync('taskset', ['--version']).status === 0;
  for (const kind of ['decoding', 'null'] as const) if (only === undefined || only === kind) await measure(kind, spans, pinned, path);
}

if (require.main === module) {
  const i = process.argv.indexOf('--receiver');
  (i > 0 ? receiverChild(process.argv[i + 1] === 'null' ? 'null' : 'decoding') : main()).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
