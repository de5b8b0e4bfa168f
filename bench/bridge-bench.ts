// The bridge (`tcpspan run`) measured from outside, through its command line: at the generator's
// full rate on one core, under overload on a fraction of a core, its memory per tracked
// connection end, and the export path's ceiling. Part of npm run bench; prints figures,
// asserts nothing.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { runConnload } from './loadgen.js';
import { startReceiverProcess, type ReceiverProcess } from './counting-receiver.js';
import { freshPort } from './ports.js';
import { hashLifeCost, mapsOf, openRingPosition, skStorageCost, type MapInfo, type SkStorageCost } from './kernel-objects.js';
import { createCpuLimit } from './cpu-limit.js';
import { track } from './children.js';
import { connectInspector, inspectorUrl } from './inspector.js';
import { countLinesWithPort, MAIN, parseRunSummary, type RunSummary } from './peers.js';
import { spawnUntilReady, type ReadyProcess } from '../test/support/ready-process.js';

const CLK_TCK = 100;
/** The export is over when the receiver's count has not moved for this long. */
const QUIET_MS = 2000;
const DRAIN_CAP_MS = 60_000;

/** BENCH_CPU_PROF=DIR: each bridge writes a V8 CPU profile (.cpuprofile) into DIR when it stops. */
function cpuProfFlags(): string[] {
  const dir = process.env['BENCH_CPU_PROF'];
  return dir ? ['--cpu-prof', `--cpu-prof-dir=${dir}`] : [];
}

async function startBridge(args: string[], env: Record<string, string>, nodeFlags: string[] = [], stdoutFd?: number): Promise<ReadyProcess> {
  const b = await spawnUntilReady('taskset', ['-c', '1', process.execPath, ...nodeFlags, ...cpuProfFlags(), MAIN, 'run', ...args], {
    ready: 'running:', stdout: stdoutFd ?? 'ignore', timeoutMs: 30_000, env: { PATH: process.env['PATH'] ?? '', ...env },
  });
  track(b.child);
  return b;
}

export function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Waits until the receiver holds `expected` spans, or until nothing moves: the receiver's count
 * unchanged and the bridge (process `pid`) idle for QUIET_MS. A bridge still busy draining its
 * ring exports nothing for a while, so a quiet receiver alone does not mean it is done.
 * Returns when the count last moved and when the wait ended.
 */
async function waitForExport(receiver: ReceiverProcess, pid: number, expected: number): Promise<{ count: number; lastChangeMs: number; endMs: number }> {
  let count = await receiver.count();
  let cpu = cpuMs(pid);
  let lastChangeMs = Date.now(), lastBusyMs = Date.now();
  const capAt = Date.now() + DRAIN_CAP_MS;
  const POLL_MS = 500;
  while (count < expected && Date.now() < capAt) {
    if (Date.now() - lastChangeMs >= QUIET_MS && Date.now() - lastBusyMs >= QUIET_MS) break;
    await sleep(POLL_MS);
    const n = await receiver.count();
    if (n !== count) { count = n; lastChangeMs = Date.now(); }
    const c = cpuMs(pid);
    if (c - cpu > 0.04 * POLL_MS) lastBusyMs = Date.now();
    cpu = c;
  }
  return { count, lastChangeMs, endMs: Date.now() };
}

function ringMap(pid: number): MapInfo | undefined {
  return mapsOf(pid).find((m) => m.type === 'ringbuf');
}

// ---------------------------------------------------------------- full rate, one core

export interface FullRate {
  connections: number;
  connections_per_s: number;
  offered_spans_per_s: number;
  spans_delivered: number;
  delivered_ratio: number;
  spans_per_s: number;
  export_tail_s: number;
  bridge_cpu_ms_per_1000_spans: number;
  bridge_cpu_percent_of_one_core: number;
  receiver_cpu_percent: number;
  close_to_export_ms: { p50: number; p99: number };
  kernel_records_per_connection?: number;
  kernel_ring_bytes_per_connection?: number;
  kernel_bytes_per_record?: number;
  /** producer position delta over the run: bytes of the records the ring took */
  kernel_ring_bytes_written?: number;
  summary: RunSummary;
}

/**
 * `tcpspan run` on CPU 1 exporting over OTLP to a counting receiver (on CPU 0 with the
 * generator, so tcpspan has its core to itself), the generator at full rate on CPU 0.
 */
export async function fullRate(seconds: number): Promise<FullRate> {
  const receiver = await startReceiverProcess(0);
  try {
    const port = freshPort();
    const bridge = await startBridge(['--port', String(port)], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint });
    const pid = bridge.child.pid!;
    const rm = ringMap(pid);
    const ring = rm ? openRingPosition(rm.id) : undefined;
    const pos0 = ring?.produced() ?? 0;
    const cpu0 = cpuMs(pid), rcpu0 = receiver.cpuMs();
    const t0 = Date.now();
    const load = await runConnload({ port, seconds, cpu: 0, serverCpu: 0 });
    const tEnd = Date.now();
    const { lastChangeMs, endMs } = await waitForExport(receiver, pid, 2 * load.connections);
    const cpu1 = cpuMs(pid), rcpu1 = receiver.cpuMs();
    const pos1 = ring?.produced() ?? 0;
    const cpuWallS = (endMs - t0) / 1000;
    ring?.close();
    await bridge.stop('SIGINT');
    const summary = parseRunSummary(bridge.stderr());
    const st = await receiver.stats();
    const wallS = (Math.max(lastChangeMs, tEnd) - t0) / 1000;
    const ringBytes = pos1 - pos0;
    const r: FullRate = {
      connections: load.connections,
      connections_per_s: Math.round(load.rate),
      offered_spans_per_s: Math.round(2 * load.rate),
      spans_delivered: st.count,
      delivered_ratio: +(st.count / (2 * load.connections)).toFixed(4),
      spans_per_s: Math.round(st.count / wallS),
      export_tail_s: +(Math.max(0, lastChangeMs - tEnd) / 1000).toFixed(1),
      bridge_cpu_ms_per_1000_spans: +(((cpu1 - cpu0) / st.count) * 1000).toFixed(1),
      bridge_cpu_percent_of_one_core: +(((cpu1 - cpu0) / (cpuWallS * 1000)) * 100).toFixed(1),
      receiver_cpu_percent: +(((rcpu1 - rcpu0) / (cpuWallS * 1000)) * 100).toFixed(1),
      close_to_export_ms: { p50: +st.p50Ms.toFixed(1), p99: +st.p99Ms.toFixed(1) },
      summary,
    };
    // Records the ring refused (full) never moved the producer position: count them at the
    // size of those that made it, so a lagging bridge does not make the kernel look cheaper.
    if (summary.kernelEvents) {
      const attempted = summary.kernelEvents + (summary.lostKernelEvents ?? 0);
      r.kernel_records_per_connection = +(attempted / load.connections).toFixed(2);
      if (ring) {
        r.kernel_bytes_per_record = Math.round(ringBytes / summary.kernelEvents);
        r.kernel_ring_bytes_per_connection = Math.round((ringBytes / summary.kernelEvents) * (attempted / load.connections));
      }
    } else if (ring) {
      r.kernel_ring_bytes_per_connection = Math.round(ringBytes / load.connections);
    }
    r.kernel_ring_bytes_written = ringBytes;
    return r;
  } finally {
    await receiver.close();
  }
}

// ---------------------------------------------------------------- overload on a fraction of a core

export interface Overload {
  share: number;
  how: string;
  connections: number;
  connections_per_s: number;
  offered_spans_per_s: number;
  /** [seconds since the load started, spans received in that second] */
  per_second: [number, number][];
  load_seconds: number;
  during: { min: number; median: number; max: number; full_seconds: number };
  delivered_during_load: number;
  delivered_after_load: number;
  delivered_total: number;
  delivered_ratio: number;
  /** over the load and the export that followed it */
  bridge_cpu_percent_of_one_core: number;
  throttled_periods: string;
  /** seconds from the load's start to its end, and to the end of the wait for the export */
  load_end_s: number;
  wait_end_s: number;
  /** the first per_second index wholly after the load */
  after_load_from: number;
  summary: RunSummary;
}

/**
 * Beyond what the bridge can carry: `tcpspan run` limited to `share` of CPU 1 (cgroup cpu
 * bandwidth), the generator at full rate on CPU 0, the receiver on CPU 1 outside the limit.
 * Spans received per second show whether export keeps going at the bridge's ceiling for the
 * whole overload or stalls until the load ends.
 */
export async function overload(share: number, seconds: number): Promise<Overload> {
  const receiver = await startReceiverProcess(1);
  const limit = createCpuLimit(share);
  try {
    const port = freshPort();
    const bridge = await startBridge(['--port', String(port)], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint });
    const pid = bridge.child.pid!;
    limit.add(pid);
    await sleep(500);
    const th0 = limit.throttling();
    const cpu0 = cpuMs(pid);
    const before = await receiver.count();
    const t0 = Date.now();
    const load = await runConnload({ port, seconds, cpu: 0, serverCpu: 0 });
    const tEnd = Date.now();
    const atEnd = await receiver.count();
    const { endMs } = await waitForExport(receiver, pid, 2 * load.connections);
    const cpu1 = cpuMs(pid);
    const th1 = limit.throttling();
    await bridge.stop('SIGINT'); // still limited: its shutdown flush is part of what it can do
    const summary = parseRunSummary(bridge.stderr());
    const st = await receiver.stats();
    // every second from the load's start to the last arrival, zeros included
    const startSec = Math.floor(t0 / 1000);
    const got = new Map(st.perSecond);
    const lastSec = Math.max(startSec, ...st.perSecond.map(([x]) => x));
    const perSecond: [number, number][] = [];
    for (let x = startSec; x <= lastSec; x++) perSecond.push([x - startSec, got.get(x) ?? 0]);
    // whole seconds inside the load window
    const full = st.perSecond.filter(([s]) => s * 1000 >= t0 && (s + 1) * 1000 <= tEnd).map(([, n]) => n);
    for (let s = Math.ceil(t0 / 1000); (s + 1) * 1000 <= tEnd; s++) if (!st.perSecond.some(([x]) => x === s)) full.push(0);
    const sorted = [...full].sort((a, b) => a - b);
    const wallS = (endMs - t0) / 1000;
    return {
      share, how: limit.how,
      connections: load.connections,
      connections_per_s: Math.round(load.rate),
      offered_spans_per_s: Math.round(2 * load.rate),
      per_second: perSecond,
      load_seconds: +((tEnd - t0) / 1000).toFixed(1),
      during: { min: sorted[0] ?? 0, median: sorted[Math.floor(sorted.length / 2)] ?? 0, max: sorted[sorted.length - 1] ?? 0, full_seconds: sorted.length },
      delivered_during_load: atEnd - before,
      delivered_after_load: st.count - atEnd,
      delivered_total: st.count,
      delivered_ratio: +(st.count / (2 * load.connections)).toFixed(4),
      bridge_cpu_percent_of_one_core: +(((cpu1 - cpu0) / (wallS * 1000)) * 100).toFixed(1),
      throttled_periods: `${th1.throttled - th0.throttled} of ${th1.periods - th0.periods}`,
      load_end_s: +((tEnd - t0) / 1000).toFixed(1),
      wait_end_s: +((endMs - t0) / 1000).toFixed(1),
      after_load_from: Math.ceil(tEnd / 1000) - startSec,
      summary,
    };
  } finally {
    limit.remove();
    await receiver.close();
  }
}

// ---------------------------------------------------------------- memory per tracked connection end

export interface Memory {
  connections_open: number;
  tracked_ends: number;
  spans_after_close: number;
  heap_used_mb: { idle: number; open: number; after_close: number };
  js_heap_bytes_per_end: number;
  js_external_bytes_per_end: number;
  kernel: SkStorageCost | undefined;
  kernel_fixed_bytes: number;
  kernel_maps: { name: string; type: string; bytes_value: number; bytes_memlock: number }[];
  bytes_per_end: number;
}

interface MemUsage { heapUsed: number; external: number; arrayBuffers: number; rss: number }

/**
 * `tcpspan run --console` started under --expose-gc --inspect: the JS heap used after a forced
 * GC with `n` connections open (2n tracked ends) against none, plus the kernel's socket storage
 * per socket, computed from the map's value size and the kernel's struct sizes (BTF). The server
 * ends live here and the client ends in a child process: each process stays under the 20,000
 * descriptor hard limit, which cannot be raised without CAP_SYS_RESOURCE.
 */
export async function memoryPerConnection(n: number, tmpDir: string): Promise<Memory> {
  const port = freshPort();
  const outFile = path.join(tmpDir, 'memory-console.out');
  const fd = openSync(outFile, 'w');
  const bridge = await startBridge(['--console', '--port', String(port)], {}, ['--expose-gc', '--inspect=127.0.0.1:0'], fd).finally(() => closeSync(fd));
  const url = inspectorUrl(bridge.stderr());
  if (!url) {
    await bridge.stop();
    throw new Error(`bench: tcpspan run --inspect printed no inspector URL: ${bridge.stderr().trim()}`);
  }
  const insp = await connectInspector(url);
  const measure = async (): Promise<MemUsage> => {
    // twice: the first collection can leave work (weak callbacks, finalizers) for a second
    const j = await insp.evaluate<string>('globalThis.gc(); globalThis.gc(); JSON.stringify(process.memoryUsage())');
    return JSON.parse(j) as MemUsage;
  };
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => { accepted.push(s); }).listen(port, '127.0.0.1', 4096);
  await once(server, 'listening');
  let clients: ReturnType<typeof spawn> | undefined;
  try {
    await sleep(1000);
    const idle = await measure();
    clients = spawn(process.execPath, ['-e', `
      const net = require('node:net'); const socks = [];
      (async () => {
        for (let i = 0; i < ${n}; i += 200) {
          const batch = Array.from({ length: Math.min(200, ${n} - i) }, () => net.connect(${port}, '127.0.0.1'));
          await Promise.all(batch.map((s) => new Promise((r, j) => { s.once('connect', r); s.once('error', j); })));
          socks.push(...batch);
        }
        process.stdout.write('open\\n');
      })().catch((e) => { console.error(e.message); process.exit(1); });
      process.stdin.on('end', () => process.exit(0)); process.stdin.resume();`], { stdio: ['pipe', 'pipe', 'inherit'] });
    const c = clients;
    // the clients report 'open', or die: never wait on a dead child
    await Promise.race([once(c.stdout!, 'data'), once(c, 'exit').then(() => {
      throw new Error('bench: the client process holding the connections exited early');
    })]);
    while (accepted.length < n) await sleep(50);
    await sleep(1500); // let the bridge take every event of the handshakes
    const open = await measure();
    const maps = mapsOf(bridge.child.pid!);
    // close: servers first, so TIME_WAIT stays on the listening port's side
    for (const s of accepted) s.destroy();
    await sleep(500);
    c.stdin!.end();
    await once(c, 'exit');
    clients = undefined;
    // every end closed should come out as one console line: the proof each was tracked
    const deadline = Date.now() + 15_000;
    let spans = 0;
    while ((spans = await countLinesWithPort(outFile, port)) < 2 * n && Date.now() < deadline) await sleep(250);
    const after = await measure();
    const kernel = skStorageCost(maps) ?? hashLifeCost(maps);
    const jsPerEnd = (open.heapUsed - idle.heapUsed) / (2 * n);
    const extPerEnd = (open.external - idle.external) / (2 * n);
    const mb = (b: number) => +(b / 2 ** 20).toFixed(2);
    return {
      connections_open: n, tracked_ends: 2 * n, spans_after_close: spans,
      heap_used_mb: { idle: mb(idle.heapUsed), open: mb(open.heapUsed), after_close: mb(after.heapUsed) },
      js_heap_bytes_per_end: Math.round(jsPerEnd),
      js_external_bytes_per_end: Math.round(extPerEnd),
      kernel,
      kernel_fixed_bytes: maps.filter((m) => m.type !== 'sk_storage').reduce((s, m) => s + m.bytes_memlock, 0),
      kernel_maps: maps.map((m) => ({ name: m.name, type: m.type, bytes_value: m.bytes_value, bytes_memlock: m.bytes_memlock })),
      bytes_per_end: Math.round(jsPerEnd + Math.max(0, extPerEnd) + (kernel?.perSocketBytes ?? 0)),
    };
  } finally {
    insp.close();
    if (clients && clients.exitCode === null) {
      clients.stdin!.end();
      await once(clients, 'exit');
    }
    for (const s of accepted) s.destroy();
    server.close();
    await bridge.stop();
  }
}

// ---------------------------------------------------------------- the export path alone

/**
 * The export path alone on one core (CPU 1): synthetic connection spans through the queue and
 * the OTLP gRPC exporter to a receiver in another process that acknowledges without decoding
 * (a decoding test receiver costs ~54 us per span and would measure itself).
 */
export function exportPathCeiling(spans: number): { spansPerSec: number; cpuMsPer1000: number; dropped: number } {
  const out = execFileSync('taskset', ['-c', '1', process.execPath, path.join(__dirname, 'export-ceiling.js'), String(spans), 'null'], { encoding: 'utf8' });
  const r = JSON.parse(out.trim().split('\n').pop()!) as { spansPerSec: number; cpuMsPer1000: number; dropped: number };
  return { spansPerSec: Math.round(r.spansPerSec), cpuMsPer1000: +r.cpuMsPer1000.toFixed(1), dropped: r.dropped };
}

