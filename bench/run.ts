// npm run bench: what tcpspan's capture costs, measured on this machine. Prints figures, asserts nothing.
//
// Placement: the load generator (client and server) runs on CPU 0, tcpspan on
// CPU 1, so the generator's rate shows what capture costs the traced workload
// and tcpspan's own CPU is measured apart. Runs alternate without/with tcpspan
// to cancel drift. BENCH_SECONDS sets the length of each run (default 8).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { buildLoadgens, runBulkload, runConnload, type ConnloadResult } from './loadgen.js';
import { decodeEvent, newKernelEvent, recordMemory } from '../src/decode/event.js';
import { CONN_LAYOUT } from '../src/decode/wire-layout.js';
import { endToEnd, exportPathCeiling, memoryPerConnection } from './bridge-bench.js';
import { spawnUntilReady, type ReadyProcess } from '../test/support/ready-process.js';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const SECONDS = Number(process.env['BENCH_SECONDS'] ?? 8);
const CLK_TCK = 100;

type EventsRun = ReadyProcess;

function startEvents(args: string[]): Promise<EventsRun> {
  return spawnUntilReady('taskset', ['-c', '1', process.execPath, MAIN, 'events', ...args], { ready: 'capturing', stdout: 'ignore' });
}

async function stopEvents(run: EventsRun): Promise<{ submitted: number; received: number; lost: { ringbuf_full: number; in_transit: number } }> {
  await run.stop('SIGINT');
  const last = run.stderr().trim().split('\n').pop() ?? '';
  return JSON.parse(last).tcpspan_events_summary;
}

/** CPU time (user + system, ms) of a process so far. */
function cpuMs(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLK_TCK;
}

/** Node process pid behind taskset (taskset execs, so it is the same pid). */
const nodePid = (run: EventsRun) => run.child.pid!;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

interface Placement { cpu: number; serverCpu: number }
// client and server share CPU 0: the generator's fastest placement, and the harshest ratio,
// since every nanosecond the programs spend lands on the generator's core
const ONE_CORE: Placement = { cpu: 0, serverCpu: 0 };

async function connectionRate(port: number, placement: Placement) {
  const base: ConnloadResult[] = [];
  const traced: ConnloadResult[] = [];
  const runs: { events: number; lost: number; inTransit: number; cpuMs: number; connections: number; seconds: number }[] = [];
  for (let round = 0; round < 2; round++) {
    // a port per run: a generator's forked server may still be exiting when the next one binds
    base.push(await runConnload({ port: port + 10 + round, seconds: SECONDS, cpu: placement.cpu, serverCpu: placement.serverCpu }));
    const ev = await startEvents(['--port', String(port + 20 + round)]);
    const cpu0 = cpuMs(nodePid(ev));
    const r = await runConnload({ port: port + 20 + round, seconds: SECONDS, cpu: placement.cpu, serverCpu: placement.serverCpu });
    const cpu1 = cpuMs(nodePid(ev));
    const summary = await stopEvents(ev);
    traced.push(r);
    runs.push({ events: summary.received, lost: summary.lost.ringbuf_full, inTransit: summary.lost.in_transit, cpuMs: cpu1 - cpu0, connections: r.connections, seconds: r.seconds });
  }
  return { base, traced, runs };
}

async function bulkRate(port: number) {
  const base: number[] = [];
  const traced: number[] = [];
  for (let round = 0; round < 2; round++) {
    base.push((await runBulkload({ port: port + 30 + round, seconds: Math.min(SECONDS, 5), cpu: 0, serverCpu: 0 })).gbit_per_s);
    const ev = await startEvents([]); // no filter: tcp_probe runs for every received segment
    traced.push((await runBulkload({ port: port + 40 + round, seconds: Math.min(SECONDS, 5), cpu: 0, serverCpu: 0 })).gbit_per_s);
    await stopEvents(ev);
  }
  return { base, traced };
}

/** Per-program kernel run time (kernel.bpf_stats_enabled) under the connection load. */
async function programCost(port: number) {
  execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=1']);
  try {
    const ev = await startEvents(['--port', String(port)]);
    await runConnload({ port, seconds: Math.min(SECONDS, 4), cpu: 0, serverCpu: 0 });
    const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as
      { name?: string; run_time_ns?: number; run_cnt?: number }[];
    await stopEvents(ev);
    return progs.filter((p) => p.name?.startsWith('handle_') && p.run_cnt)
      .map((p) => ({ program: p.name!, runs: p.run_cnt!, nsPerRun: Math.round(p.run_time_ns! / p.run_cnt!) }));
  } finally {
    execFileSync('sysctl', ['-q', '-w', 'kernel.bpf_stats_enabled=0']);
  }
}

/** Decoding alone: records laid out as in the ring, decoded into one reused object. */
function decodeCost(): number {
  const n = 1 << 16;
  const stride = CONN_LAYOUT.size + 8;
  const buf = new ArrayBuffer(n * stride);
  const view = new DataView(buf);
  for (let i = 0; i < n; i++) {
    const off = i * stride + 8;
    view.setUint32(off + CONN_LAYOUT.fields.cookie.offset, i, true);
    view.setUint8(off + CONN_LAYOUT.fields.kind.offset, 2); // Close: the record every span needs
    view.setUint8(off + CONN_LAYOUT.fields.n_trans.offset, 5);
    view.setUint8(off + CONN_LAYOUT.fields.flags.offset, 1);
    view.setUint32(off + CONN_LAYOUT.fields.pid.offset, 1000 + (i % 50), true);
    new Uint8Array(buf, off + CONN_LAYOUT.fields.comm.offset, 4).set([110, 111, 100, 101]);
  }
  const mem = recordMemory(buf);
  const out = newKernelEvent();
  let sink = 0;
  const pass = () => { for (let i = 0; i < n; i++) { decodeEvent(mem, i * stride + 8, out); sink += out.cookie; } };
  for (let w = 0; w < 20; w++) pass(); // warm the JIT
  const rounds = 100;
  const t0 = process.hrtime.bigint();
  for (let r = 0; r < rounds; r++) pass();
  const ns = Number(process.hrtime.bigint() - t0) / (rounds * n);
  if (sink < 0) console.log(sink);
  return ns;
}

/** Another tcpspan's programs would run on every event too and inflate every figure. */
function refuseIfAttached(): void {
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as { id: number; name?: string }[];
  const ours = progs.filter((p) => p.name === 'handle_set_state');
  if (ours.length) {
    throw new Error(`another tcpspan is attached (BPF program ids ${ours.map((p) => p.id).join(', ')}): stop it first, ` +
      'its programs would add to every figure');
  }
}

async function main(): Promise<void> {
  refuseIfAttached();
  await buildLoadgens();
  const port = 46000 + (process.pid % 1000);
  console.log(`tcpspan benchmark: ${SECONDS} s runs; generator (client and server) on CPU 0, tcpspan on CPU 1\n`);

  const conn = await connectionRate(port, ONE_CORE);
  const baseRate = median(conn.base.map((r) => r.rate));
  const tracedRate = median(conn.traced.map((r) => r.rate));
  const events = conn.runs.reduce((s, r) => s + r.events, 0);
  const lost = conn.runs.reduce((s, r) => s + r.lost + r.inTransit, 0);
  const connections = conn.runs.reduce((s, r) => s + r.connections, 0);
  const cpu = conn.runs.reduce((s, r) => s + r.cpuMs, 0);
  const seconds = conn.runs.reduce((s, r) => s + r.seconds, 0);

  const bulk = await bulkRate(port);
  const bulkBase = median(bulk.base);
  const bulkTraced = median(bulk.traced);
  const progs = await programCost(port + 50);
  const decodeNs = decodeCost();
  const e2e = await endToEnd(port + 60, SECONDS);
  const memory = await memoryPerConnection(port + 70, 10_000);
  const ceiling = exportPathCeiling(200_000);

  const results = {
    connections_per_s: { without: Math.round(baseRate), with_events: Math.round(tracedRate), ratio: +(tracedRate / baseRate).toFixed(3) },
    bulk_gbit_per_s: { without: +bulkBase.toFixed(1), with_events: +bulkTraced.toFixed(1), ratio: +(bulkTraced / bulkBase).toFixed(3) },
    kernel_events_per_s: Math.round(events / seconds),
    events_per_connection: +(events / connections).toFixed(2),
    lost_events: lost,
    node_cpu_ms_per_1000_connections: +((cpu / connections) * 1000).toFixed(1),
    node_cpu_percent_of_one_core: +((cpu / (seconds * 1000)) * 100).toFixed(1),
    decode_ns_per_event: +decodeNs.toFixed(1),
    bpf_ns_per_run: progs,
    bridge_end_to_end: e2e,
    bridge_memory: memory,
    export_ceiling: ceiling,
    runs: { connload_without: conn.base, connload_with: conn.traced, events: conn.runs, bulk },
  };
  const rows: [string, string][] = [
    ['connections/s without tcpspan', `${results.connections_per_s.without}`],
    ['connections/s with tcpspan events', `${results.connections_per_s.with_events} (ratio ${results.connections_per_s.ratio}, target >= 0.97)`],
    ['bulk Gbit/s without', `${results.bulk_gbit_per_s.without}`],
    ['bulk Gbit/s with (tcp_probe on)', `${results.bulk_gbit_per_s.with_events} (ratio ${results.bulk_gbit_per_s.ratio}, target >= 0.95)`],
    ['kernel events/s decoded', `${results.kernel_events_per_s} (${results.events_per_connection} per connection)`],
    ['lost events', `${lost} (target 0)`],
    ['Node CPU per 1,000 connections', `${results.node_cpu_ms_per_1000_connections} ms (${results.node_cpu_percent_of_one_core} % of a core)`],
    ['decode cost per event', `${results.decode_ns_per_event} ns (target <= 60)`],
    ...progs.map((p): [string, string] => [`BPF ${p.program}`, `${p.nsPerRun} ns/run (${p.runs} runs)`]),
    ['run: connections/s (whole bridge)', `${e2e.connections_per_s} (${e2e.connections} connections)`],
    ['run: spans delivered / 2 x connections', `${e2e.spans_delivered} / ${2 * e2e.connections} = ${e2e.delivered_ratio} (target 1.0)`],
    ['run: spans/s to the OTLP receiver', `${e2e.spans_per_s}`],
    ['run: bridge CPU per 1,000 spans', `${e2e.bridge_cpu_ms_per_1000_spans} ms (${e2e.bridge_cpu_percent_of_one_core} % of a core)`],
    ['run: close-to-export latency', `p50 ${e2e.close_to_export_ms.p50} ms, p99 ${e2e.close_to_export_ms.p99} ms`],
    ['run: memory per tracked connection end', `${memory.bytes_per_tracked_end} B (${memory.connections_open} connections open, RSS ${memory.rss_before_mb} -> ${memory.rss_after_mb} MiB; target <= 1 KiB)`],
    ['export path ceiling (one core)', `${ceiling.spansPerSec} spans/s, ${ceiling.cpuMsPer1000} ms CPU per 1,000, ${ceiling.dropped} dropped (target >= 60k/s)`],
  ];
  const width = Math.max(...rows.map(([k]) => k.length));
  for (const [k, v] of rows) console.log(`${k.padEnd(width)}  ${v}`);
  mkdirSync(path.join(ROOT, 'dist', 'bench'), { recursive: true });
  writeFileSync(path.join(ROOT, 'dist', 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nfull results: dist/bench/results.json');
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).message}`);
  process.exitCode = 1;
});
