// What each tracer costs the traced workload: the connection generator's rate with no tracer and
// with each tracer attached in turn, modes alternated round by round; bulk throughput with and
// without tcpspan; and tcpspan's per-program kernel run time.
//
// Placement: the generator (client and server) on CPU 0, every tracer (and its receiver) on
// CPU 1, so the generator's rate shows what tracing costs the workload's core.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { runBulkload, runConnload } from './loadgen.js';
import { freshPort } from './ports.js';
import { bpftool, foreignStateTracers, programsOf } from './kernel-objects.js';
import { cpuMs } from './bridge-bench.js';
import type { Tracer, TracerOutput } from './peers.js';
import { MAIN, parseEventsSummary } from './peers.js';
import { track } from './children.js';
import { spawnUntilReady } from '../test/support/ready-process.js';

export interface ModeRun {
  mode: string;
  round: number;
  port: number;
  rate: number;
  connections: number;
  seconds: number;
  failed: number;
  tracerCpuMs?: number;
  output?: TracerOutput;
  /** pids of other processes with programs on sock:inet_sock_set_state during the run */
  foreign: number[];
  error?: string;
}

export interface ModeResult {
  mode: string;
  label: string;
  status: 'baseline' | 'traced' | 'partial' | 'did not trace' | 'failed' | 'unavailable';
  why?: string;
  medianRate?: number;
  ratio?: number;
  rates: number[];
  outputsPerConnection?: number;
  unit?: string;
  lost?: number;
  tracerCpuPercent?: number;
  contaminatedRuns: number;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Each round runs every mode once, the order rotated by one per round, so no mode always follows the same one. */
export async function sideBySide(tracers: Tracer[], rounds: number, seconds: number, tmpDir: string,
  progress: (m: string) => void, load: { http?: boolean } = {}): Promise<{ runs: ModeRun[]; results: ModeResult[] }> {
  const available = tracers.filter((t) => !t.unavailable);
  const modes: (Tracer | undefined)[] = [undefined, ...available];
  const runs: ModeRun[] = [];
  for (let round = 0; round < rounds; round++) {
    const order = modes.map((_, i) => modes[(i + round) % modes.length]);
    for (const tracer of order) {
      const mode = tracer?.key ?? 'none';
      const port = freshPort();
      const foreign = new Set(foreignStateTracers());
      const outFile = path.join(tmpDir, `${mode}-${round}.out`);
      try {
        if (!tracer) {
          const r = await runConnload({ port, seconds, cpu: 0, serverCpu: 0, ...load });
          runs.push({ mode, round, port, ...r, foreign: [...foreign] });
          progress(`round ${round + 1}/${rounds} ${mode}: ${Math.round(r.rate)} connections/s`);
          continue;
        }
        const t = await tracer.start(port, outFile);
        const c0 = cpuMs(t.pid);
        const r = await runConnload({ port, seconds, cpu: 0, serverCpu: 0, ...load });
        const c1 = cpuMs(t.pid);
        for (const p of foreignStateTracers(t.pid)) foreign.add(p);
        const output = await t.stop();
        runs.push({ mode, round, port, ...r, tracerCpuMs: c1 - c0, output, foreign: [...foreign] });
        progress(`round ${round + 1}/${rounds} ${mode}: ${Math.round(r.rate)} connections/s, ` +
          `${(output.outputs / r.connections).toFixed(2)} ${output.unit}/connection`);
      } catch (err) {
        runs.push({ mode, round, port, rate: NaN, connections: 0, seconds: 0, failed: 0, foreign: [...foreign], error: (err as Error).message });
        progress(`round ${round + 1}/${rounds} ${mode}: failed: ${(err as Error).message}`);
      } finally {
        rmSync(outFile, { force: true }); // tcpstates writes ~100 MB a run
      }
    }
  }
  const baseRate = median(runs.filter((r) => r.mode === 'none' && !r.error).map((r) => r.rate));
  const results: ModeResult[] = [{
    mode: 'none', label: 'none', status: 'baseline', medianRate: baseRate, ratio: 1, rates: runs.filter((r) => r.mode === 'none').map((r) => r.rate),
    contaminatedRuns: runs.filter((r) => r.mode === 'none' && r.foreign.length).length,
  }];
  for (const t of tracers) {
    if (t.unavailable) {
      results.push({ mode: t.key, label: t.label, status: 'unavailable', why: t.unavailable, rates: [], contaminatedRuns: 0 });
      continue;
    }
    const mine = runs.filter((r) => r.mode === t.key);
    const ok = mine.filter((r) => !r.error && r.output);
    const contaminatedRuns = mine.filter((r) => r.foreign.length).length;
    if (ok.length === 0) {
      results.push({ mode: t.key, label: t.label, status: 'failed', why: mine[0]?.error ?? 'no run', rates: [], contaminatedRuns });
      continue;
    }
    const conns = ok.reduce((s, r) => s + r.connections, 0);
    const outs = ok.reduce((s, r) => s + r.output!.outputs, 0);
    const perConn = outs / conns;
    const expected = ok[0]!.output!.expectedPerConnection;
    const lost = ok.reduce((s, r) => s + (r.output!.lost ?? 0), 0);
    const notes = [...new Set(ok.map((r) => r.output!.note).filter(Boolean))];
    const errors = mine.filter((r) => r.error).map((r) => r.error!);
    // partial: less than one output per end, or more than 1 % of its events lost by its own count
    const status: ModeResult['status'] = outs === 0 ? 'did not trace' : perConn < 0.99 * expected || lost > 0.01 * outs ? 'partial' : 'traced';
    const rate = median(ok.map((r) => r.rate));
    results.push({
      mode: t.key, label: t.label, status,
      ...(notes.length || errors.length ? { why: [...notes, ...errors.map((e) => `a run failed: ${e}`)].join('; ') } : {}),
      rates: ok.map((r) => r.rate),
      ...(status !== 'did not trace' && { medianRate: rate, ratio: rate / baseRate }),
      outputsPerConnection: perConn, unit: ok[0]!.output!.unit, lost,
      tracerCpuPercent: (ok.reduce((s, r) => s + (r.tracerCpuMs ?? 0), 0) / (ok.reduce((s, r) => s + r.seconds, 0) * 1000)) * 100,
      contaminatedRuns,
    });
  }
  return { runs, results };
}

// ---------------------------------------------------------------- bulk throughput

async function startEvents(args: string[]) {
  const ev = await spawnUntilReady('taskset', ['-c', '1', process.execPath, MAIN, 'events', ...args], { ready: 'capturing', stdout: 'ignore', timeoutMs: 30_000 });
  track(ev.child);
  return ev;
}

/** One connection's throughput without and with `tcpspan events` (no filter: tcp_probe runs for every received segment). */
/**
 * Bulk throughput without and with `tcpspan events`, and the receive-path program's cost per
 * segment while traced (kernel.bpf_stats_enabled: handle_probe runs once per received segment,
 * data or ACK, of both ends).
 */
export async function bulkRate(rounds: number, seconds: number): Promise<{ base: number[]; traced: number[]; probeNsPerRun: number[]; probeRuns: number[] }> {
  const base: number[] = [];
  const traced: number[] = [];
  const probeNsPerRun: number[] = [];
  const probeRuns: number[] = [];
  const was = execFileSync('sysctl', ['-n', 'kernel.bpf_stats_enabled'], { encoding: 'utf8' }).trim();
  try {
    for (let round = 0; round < rounds; round++) {
      execFileSync('sysctl', ['-q', '-w', `kernel.bpf_stats_enabled=${was}`]);
      base.push((await runBulkload({ port: freshPort(), seconds, cpu: 0, serverCpu: 0 })).gbit_per_s);
      execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
      const ev = await startEvents([]);
      try {
        type P = { id: number; name?: string; run_time_ns?: number; run_cnt?: number };
        const ids = new Set(programsOf(ev.child.pid!).map((p) => p.id));
        const probe = () => bpftool<P[]>(['prog', 'show']).find((p) => ids.has(p.id) && p.name === 'handle_probe');
        const before = probe();
        traced.push((await runBulkload({ port: freshPort(), seconds, cpu: 0, serverCpu: 0 })).gbit_per_s);
        const after = probe();
        const runs = (after?.run_cnt ?? 0) - (before?.run_cnt ?? 0);
        probeRuns.push(runs);
        probeNsPerRun.push(runs ? ((after?.run_time_ns ?? 0) - (before?.run_time_ns ?? 0)) / runs : 0);
      } finally {
        await ev.stop('SIGINT');
      }
    }
  } finally {
    execFileSync('sysctl', ['-q', '-w', `kernel.bpf_stats_enabled=${was}`]);
  }
  return { base, traced, probeNsPerRun, probeRuns };
}

/**
 * The receive-path program's steady cost per segment: one loopback connection traced by `tcpspan
 * events --port P`, 64-byte messages echoed back and forth (each one a received segment, its
 * socket's lines warm), handle_probe's run time over its runs (kernel.bpf_stats_enabled).
 * Steadier than the bulk runs, whose GSO segments vary in number and size from run to run.
 */
export async function probePerSegment(roundTrips: number): Promise<{ runs: number; nsPerRun: number }> {
  const port = freshPort();
  const was = execFileSync('sysctl', ['-n', 'kernel.bpf_stats_enabled'], { encoding: 'utf8' }).trim();
  const ev = await startEvents(['--port', String(port)]);
  const server = net.createServer((s) => { s.setNoDelay(true); s.on('data', (d) => s.write(d)); });
  try {
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');
    const c = net.connect(port, '127.0.0.1');
    c.setNoDelay(true);
    await once(c, 'connect');
    execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
    type P = { id: number; name?: string; run_time_ns?: number; run_cnt?: number };
    const id = programsOf(ev.child.pid!).find((p) => p.name === 'handle_probe')!.id;
    const probe = () => bpftool<P>(['prog', 'show', 'id', String(id)]);
    const before = probe();
    const msg = Buffer.alloc(64, 1);
    let n = 0;
    await new Promise<void>((resolve) => {
      c.on('data', () => { if (++n >= roundTrips) resolve(); else c.write(msg); });
      c.write(msg);
    });
    const after = probe();
    c.destroy();
    const runs = (after.run_cnt ?? 0) - (before.run_cnt ?? 0);
    return { runs, nsPerRun: runs ? ((after.run_time_ns ?? 0) - (before.run_time_ns ?? 0)) / runs : 0 };
  } finally {
    execFileSync('sysctl', ['-q', '-w', `kernel.bpf_stats_enabled=${was}`]);
    server.close();
    await ev.stop('SIGINT');
  }
}

export { median };

// ---------------------------------------------------------------- per-program kernel cost

export interface ProgramCost { program: string; runs: number; nsPerRun: number; runsPerConnection: number }

/** Runs fn with kernel.bpf_stats_enabled on (programs' run counts and times), restoring the setting after. */
async function withBpfStats<T>(fn: () => Promise<T>): Promise<T> {
  const was = execFileSync('sysctl', ['-n', 'kernel.bpf_stats_enabled'], { encoding: 'utf8' }).trim();
  execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
  try {
    return await fn();
  } finally {
    execFileSync('sysctl', ['-q', '-w', `kernel.bpf_stats_enabled=${was}`]);
  }
}

/** The kernel runs and run time of each BPF program of process `pid` while `load` makes its connections. */
async function programCostsOver(pid: number, load: () => Promise<{ connections: number }>): Promise<{ connections: number; programs: ProgramCost[] }> {
  const ids = new Set(programsOf(pid).map((p) => p.id));
  type P = { id: number; name?: string; run_time_ns?: number; run_cnt?: number };
  const snap = () => new Map(bpftool<P[]>(['prog', 'show']).filter((p) => ids.has(p.id)).map((p) => [p.id, p]));
  const before = snap();
  const { connections } = await load();
  const after = snap();
  const programs = [...after.values()].map((p) => {
    const b = before.get(p.id);
    const runs = (p.run_cnt ?? 0) - (b?.run_cnt ?? 0);
    const ns = (p.run_time_ns ?? 0) - (b?.run_time_ns ?? 0);
    return { program: p.name ?? `id ${p.id}`, runs, nsPerRun: runs ? Math.round(ns / runs) : 0, runsPerConnection: +(runs / connections).toFixed(2) };
  }).filter((p) => p.runs > 0);
  return { connections, programs };
}

/** Kernel run time of each tcpspan program under the connection load (kernel.bpf_stats_enabled). */
export async function programCost(seconds: number): Promise<{ connections: number; events?: number; programs: ProgramCost[] }> {
  const port = freshPort();
  return withBpfStats(async () => {
    const ev = await startEvents(['--port', String(port)]);
    const { connections, programs } = await programCostsOver(ev.child.pid!, () => runConnload({ port, seconds, cpu: 0, serverCpu: 0 }));
    await ev.stop('SIGINT');
    const summary = parseEventsSummary(ev.stderr());
    // records the kernel produced: those received plus those the full ring refused
    const events = summary && summary.received + (summary.lost['ringbuf_full'] ?? 0);
    return { connections, ...(events !== undefined && { events }), programs };
  });
}

/**
 * Kernel run time of the payload programs (and the others) in `tcpspan run` with both inspect
 * options on, under the HTTP connection load (kernel.bpf_stats_enabled).
 */
export async function inspectProgramCost(seconds: number, receiverEndpoint: string): Promise<{ connections: number; programs: ProgramCost[] }> {
  const port = freshPort();
  return withBpfStats(async () => {
    const run = await spawnUntilReady('taskset', ['-c', '1', process.execPath, MAIN, 'run', '--port', String(port)], {
      ready: 'running:', stdout: 'ignore', timeoutMs: 30_000,
      env: { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: receiverEndpoint, TCPSPAN_INSPECT_TRACEPARENT: 'true', TCPSPAN_INSPECT_PROTOCOLS: 'true' },
    });
    track(run.child);
    const cost = await programCostsOver(run.child.pid!, () => runConnload({ port, seconds, cpu: 0, serverCpu: 0, http: true }));
    await run.stop('SIGINT');
    return cost;
  });
}
