// The soak (npm run bench -- --only soak): `tcpspan run` exporting over OTLP gRPC under steady
// connection churn for minutes, its memory sampled all along. A leak shows as a slope: the JS
// heap after a forced GC (read through the inspector, as the memory section does) and the
// process's RSS (/proc/PID/status), each fitted by least squares in KB per minute, after a
// warm-up that lets the JIT, the pools and the queues reach their working size.
import { readFileSync } from 'node:fs';
import { runConnload } from './loadgen.js';
import { startReceiverProcess } from './counting-receiver.js';
import { freshPort } from './ports.js';
import { connectInspector, inspectorUrl } from './inspector.js';
import { track } from './children.js';
import { MAIN, parseRunSummary, type RunSummary } from './peers.js';
import { cpuMs } from './bridge-bench.js';
import { spawnUntilReady } from '../test/support/ready-process.js';

export interface SoakSample { t_s: number; heap_used_kb: number; rss_kb: number; spans: number }

export interface Soak {
  seconds: number;
  rate_target: number;
  connections: number;
  connections_per_s: number;
  warmup_s: number;
  sample_every_s: number;
  samples: SoakSample[];
  /** least-squares slopes over the samples after the warm-up, KB per minute */
  heap_slope_kb_per_min: number;
  rss_slope_kb_per_min: number;
  heap_kb: { first: number; last: number; min: number; max: number };
  rss_kb: { first: number; last: number; min: number; max: number };
  spans_delivered: number;
  delivered_ratio: number;
  bridge_cpu_percent_of_one_core: number;
  summary: RunSummary;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Slope of y over x (least squares). */
export function slope(xs: number[], ys: number[]): number {
  const n = xs.length;
  if (n < 2) return NaN;
  const mx = xs.reduce((s, x) => s + x, 0) / n, my = ys.reduce((s, y) => s + y, 0) / n;
  let num = 0, den = 0;
  for (let i = 0; i < n; i++) { num += (xs[i]! - mx) * (ys[i]! - my); den += (xs[i]! - mx) ** 2; }
  return den === 0 ? NaN : num / den;
}

function rssKb(pid: number): number {
  return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? NaN);
}

/**
 * `seconds` of churn at `rate` connections a second (connload, client and server on CPU 0), tcpspan
 * on CPU 1 under --expose-gc --inspect, sampled every `every` seconds.
 */
export async function soak(seconds: number, rate: number, every: number, progress: (m: string) => void): Promise<Soak> {
  const receiver = await startReceiverProcess(0);
  const port = freshPort();
  const bridge = await spawnUntilReady('taskset', ['-c', '1', process.execPath, '--expose-gc', '--inspect=127.0.0.1:0', MAIN, 'run', '--port', String(port)], {
    ready: 'running:', stdout: 'ignore', timeoutMs: 30_000,
    env: { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint },
  });
  track(bridge.child);
  const pid = bridge.child.pid!;
  const url = inspectorUrl(bridge.stderr());
  if (!url) { await bridge.stop(); await receiver.close(); throw new Error(`bench: tcpspan run --inspect printed no inspector URL: ${bridge.stderr().trim()}`); }
  const insp = await connectInspector(url);
  const samples: SoakSample[] = [];
  try {
    const t0 = Date.now();
    const cpu0 = cpuMs(pid);
    const load = runConnload({ port, seconds, rate, cpu: 0, serverCpu: 0 });
    let done = false;
    void load.finally(() => { done = true; });
    while (!done) {
      // twice: the first collection can leave work (weak callbacks, finalizers) for a second
      const heap = await insp.evaluate<number>('globalThis.gc(); globalThis.gc(); process.memoryUsage().heapUsed');
      const s: SoakSample = { t_s: +((Date.now() - t0) / 1000).toFixed(1), heap_used_kb: Math.round(heap / 1024), rss_kb: rssKb(pid), spans: await receiver.count() };
      samples.push(s);
      if (samples.length % 6 === 1) progress(`soak: ${s.t_s} s: heap ${(s.heap_used_kb / 1024).toFixed(1)} MiB, rss ${(s.rss_kb / 1024).toFixed(1)} MiB, ${s.spans} spans`);
      const next = t0 + samples.length * every * 1000;
      while (!done && Date.now() < next) await sleep(Math.min(250, next - Date.now()));
    }
    const l = await load;
    const cpu1 = cpuMs(pid);
    const wallS = (Date.now() - t0) / 1000;
    // the export of the last second's spans
    const deadline = Date.now() + 15_000;
    while ((await receiver.count()) < 2 * l.connections && Date.now() < deadline) await sleep(250);
    const delivered = await receiver.count();
    insp.close();
    await bridge.stop('SIGINT');
    const warmup = Math.min(60, seconds / 5);
    const steady = samples.filter((s) => s.t_s >= warmup);
    const xs = steady.map((s) => s.t_s / 60);
    const range = (k: 'heap_used_kb' | 'rss_kb') => {
      const v = steady.map((s) => s[k]);
      return { first: v[0] ?? NaN, last: v[v.length - 1] ?? NaN, min: Math.min(...v), max: Math.max(...v) };
    };
    return {
      seconds, rate_target: rate, connections: l.connections, connections_per_s: Math.round(l.rate), warmup_s: warmup, sample_every_s: every, samples,
      heap_slope_kb_per_min: +slope(xs, steady.map((s) => s.heap_used_kb)).toFixed(1),
      rss_slope_kb_per_min: +slope(xs, steady.map((s) => s.rss_kb)).toFixed(1),
      heap_kb: range('heap_used_kb'), rss_kb: range('rss_kb'),
      spans_delivered: delivered, delivered_ratio: +(delivered / (2 * l.connections)).toFixed(4),
      bridge_cpu_percent_of_one_core: +(((cpu1 - cpu0) / (wallS * 1000)) * 100).toFixed(1),
      summary: parseRunSummary(bridge.stderr()),
    };
  } finally {
    insp.close();
    if (bridge.child.exitCode === null) await bridge.stop();
    await receiver.close();
  }
}
