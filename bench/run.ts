// npm run bench: what tracing costs on this machine, tcpspan beside its peers, and whether the
// bridge keeps up. Prints raw figures in one report at the end; asserts nothing.
//
//   npm run bench -- [--only peers,inspect,options,bulk,programs,bridge,overload,memory,ceiling,soak] [--rounds N] [--seconds S] ...
//   npm run bench -- --only soak [--soak-seconds S]     (10 minutes by default; never part of the default run)
//
// Placement: the load generator (client and server) runs on CPU 0; tracers, tcpspan and the
// bench itself on CPU 1. tcpspan is driven only through its command line.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { buildLoadgens } from './loadgen.js';
import { startReceiverProcess, type ReceiverProcess } from './counting-receiver.js';
import { ensurePeers, inspectTracers, optionTracers, peerTracers, tcpspanTracers } from './peers.js';
import { bulkRate, inspectProgramCost, median, probePerSegment, programCost, sideBySide, type ModeResult } from './side-by-side.js';
import { exportPathCeiling, fullRate, memoryPerConnection, overload } from './bridge-bench.js';
import { foreignStateTracers } from './kernel-objects.js';
import { stopAll } from './children.js';
import { soak } from './soak.js';

const ROOT = path.resolve(__dirname, '..', '..');
const SECTIONS = ['peers', 'inspect', 'options', 'bulk', 'programs', 'bridge', 'overload', 'memory', 'ceiling', 'soak'] as const;
type Section = (typeof SECTIONS)[number];
/** What runs without --only: everything but the soak, which takes minutes. */
const DEFAULT_SECTIONS = SECTIONS.filter((s) => s !== 'soak');

// ---------------------------------------------------------------- options: one table drives parsing and usage

interface Flag { name: string; arg?: string; doc: string; default: string | boolean }
const FLAGS: Flag[] = [
  { name: 'only', arg: 'LIST', doc: `sections to run, comma-separated: ${SECTIONS.join(',')} (soak only when named)`, default: DEFAULT_SECTIONS.join(',') },
  { name: 'rounds', arg: 'N', doc: 'rounds of the side-by-side (every mode once a round)', default: '3' },
  { name: 'seconds', arg: 'S', doc: 'length of each connection-rate run', default: process.env['BENCH_SECONDS'] ?? '6' },
  { name: 'bridge-seconds', arg: 'S', doc: 'length of the full-rate bridge run', default: '8' },
  { name: 'overload-share', arg: 'F', doc: 'share of one core tcpspan gets during the overload (cgroup cpu bandwidth)', default: '0.25' },
  { name: 'overload-seconds', arg: 'S', doc: 'length of the overload', default: '8' },
  { name: 'memory-connections', arg: 'N', doc: 'connections held open for the memory figure (2 tracked ends each)', default: '10000' },
  { name: 'soak-seconds', arg: 'S', doc: 'length of the soak (steady churn, memory sampled)', default: '600' },
  { name: 'soak-rate', arg: 'N', doc: 'connections/s during the soak (2 spans each)', default: '1000' },
  { name: 'soak-every', arg: 'S', doc: 'seconds between two memory samples of the soak', default: '10' },
  { name: 'no-install', doc: 'do not install missing peers (libbpf-tools, bpftrace) with apt-get', default: false },
  { name: 'help', doc: 'this text', default: false },
];

function usage(): string {
  const rows = FLAGS.map((f) => [`--${f.name}${f.arg ? ` ${f.arg}` : ''}`, `${f.doc}${typeof f.default === 'string' ? ` (default ${f.default})` : ''}`]);
  const w = Math.max(...rows.map(([a]) => a!.length));
  return `usage: npm run bench -- [options]   (root; scripts/bench sets up first)\n${rows.map(([a, d]) => `  ${a!.padEnd(w)}  ${d}`).join('\n')}`;
}

interface Options { only: Set<Section>; rounds: number; seconds: number; bridgeSeconds: number; overloadShare: number;
  overloadSeconds: number; memoryConnections: number; soakSeconds: number; soakRate: number; soakEvery: number; install: boolean }

function parseOptions(argv: string[]): Options | undefined {
  const { values } = parseArgs({
    args: argv, strict: true,
    options: Object.fromEntries(FLAGS.map((f) => [f.name, f.arg ? { type: 'string', default: f.default as string } : { type: 'boolean', default: false }])),
  });
  if (values['help']) return undefined;
  const num = (name: string, min: number, max: number): number => {
    const n = Number(values[name]);
    if (!(n >= min && n <= max)) throw new Error(`--${name} wants a number in [${min}, ${max}], got '${values[name]}'`);
    return n;
  };
  const only = String(values['only']).split(',').map((s) => s.trim()).filter(Boolean);
  for (const s of only) if (!(SECTIONS as readonly string[]).includes(s)) throw new Error(`--only: unknown section '${s}' (expected ${SECTIONS.join(', ')})`);
  return {
    only: new Set(only as Section[]), rounds: num('rounds', 1, 20), seconds: num('seconds', 1, 600), bridgeSeconds: num('bridge-seconds', 1, 600),
    overloadShare: num('overload-share', 0.05, 1), overloadSeconds: num('overload-seconds', 2, 600),
    memoryConnections: num('memory-connections', 100, 19_000),
    soakSeconds: num('soak-seconds', 30, 24 * 3600), soakRate: num('soak-rate', 1, 100_000), soakEvery: num('soak-every', 1, 600),
    install: !values['no-install'],
  };
}

// ---------------------------------------------------------------- report formatting

const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || Number.isNaN(n) ? '-' : n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });

function table(head: string[], rows: string[][], right: boolean[]): string {
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) => r.map((c, i) => (right[i] ? c.padStart(w[i]!) : c.padEnd(w[i]!))).join('  ').trimEnd();
  return [line(head), line(w.map((n) => '-'.repeat(n))), ...rows.map(line)].join('\n');
}

function keyValues(rows: [string, string][]): string {
  const w = Math.max(...rows.map(([k]) => k.length));
  return rows.map(([k, v]) => `  ${k.padEnd(w)}  ${v}`).join('\n');
}

const progress = (m: string): void => { process.stderr.write(`bench: ${m}\n`); };

// ---------------------------------------------------------------- sections

function peersReport(results: ModeResult[], o: Options): string {
  const rows = results.map((r) => [
    r.label,
    fmt(r.medianRate),
    r.ratio === undefined ? '-' : r.ratio.toFixed(3),
    r.outputsPerConnection === undefined ? '-' : `${r.outputsPerConnection.toFixed(2)} ${r.unit}`,
    r.lost === undefined ? '-' : fmt(r.lost),
    r.tracerCpuPercent === undefined ? '-' : `${r.tracerCpuPercent.toFixed(0)} %`,
    r.status + (r.contaminatedRuns ? ` *${r.contaminatedRuns}` : ''),
  ]);
  const notes = results.filter((r) => r.why).map((r) => `  ${r.label}: ${r.why}`);
  const rates = results.filter((r) => r.rates.length).map((r) => `  ${r.mode}: ${r.rates.map((x) => fmt(x)).join(', ')}`);
  return [
    `Connection rate with each tracer attached (bench/connload.c, client and server on CPU 0, tracer on CPU 1; ${o.rounds} rounds x ${o.seconds} s, modes alternated)`,
    table(['tracer', 'conn/s', 'ratio', 'output/conn', 'lost', 'tracer CPU', 'status'], rows, [false, true, true, true, true, true, false]),
    '  ratio: median rate over the median without a tracer. output/conn: what the tracer wrote about the bench\'s',
    '  connections (a line, event or span naming the run\'s port) per connection; one per end is 2. A tracer that wrote',
    '  nothing gets no ratio ("did not trace"); "partial" wrote less than one output per end or lost > 1 % by its own',
    '  count (lost: perf-buffer/ring-buffer losses the tracer reports). tcpspan runs with --port',
    '  (its kernel-side filter); the peers have no either-end port filter and trace every socket.',
    '  *N: in N runs another process had a program on sock:inet_sock_set_state (another tracer, e.g. a test run), inflating the cost.',
    ...(notes.length ? ['notes:', ...notes] : []),
    'rates per run (connections/s):', ...rates,
  ].join('\n');
}

async function main(): Promise<void> {
  let o: Options | undefined;
  try {
    o = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`bench: ${(err as Error).message}\n${usage()}\n`);
    process.exitCode = 2;
    return;
  }
  if (!o) { process.stdout.write(`${usage()}\n`); return; }
  // the bench's own work (orchestration, test servers) stays off the generator's CPU
  execFileSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { stdio: 'ignore' });
  await buildLoadgens();
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'tcpspan-bench-'));
  // interrupted: stop the tracers we started (they hold programs attached), then go
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      progress(`${sig}: stopping the tracers started so far`);
      void stopAll(5000).finally(() => {
        rmSync(tmp, { recursive: true, force: true });
        process.exit(130);
      });
    });
  }
  const started = Date.now();
  const load0 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const foreign0 = foreignStateTracers();
  const results: Record<string, unknown> = { started: new Date(started).toISOString(), options: { ...o, only: [...o.only] } };
  const report: string[] = [];
  const section = async (name: Section, fn: () => Promise<string>): Promise<void> => {
    if (!o!.only.has(name)) return;
    progress(`-- ${name}`);
    try {
      report.push(await fn());
    } catch (err) {
      report.push(`${name}: failed: ${(err as Error).message}`);
      results[name] = { error: (err as Error).message };
    }
  };
  let receiver: ReceiverProcess | undefined;
  let bridgeMsPer1000: number | undefined;
  try {
    await section('peers', async () => {
      const peers = ensurePeers(o!.install);
      const tracers = [...peerTracers(peers), ...tcpspanTracers(async () => (receiver ??= await startReceiverProcess(1)))];
      const r = await sideBySide(tracers, o!.rounds, o!.seconds, tmp, progress);
      results['peers'] = { ...r, peer_notes: peers.notes, binaries: { tcplife: peers.tcplife, tcpstates: peers.tcpstates, bpftrace: peers.bpftrace } };
      return peersReport(r.results, o!);
    });

    await section('inspect', async () => {
      // every connection carries one small HTTP/1.1 request with a traceparent header (connload --http)
      const r = await sideBySide(inspectTracers(async () => (receiver ??= await startReceiverProcess(1))), o!.rounds, o!.seconds, tmp, progress, { http: true });
      const plain = r.results.find((x) => x.mode === 'run-otlp')?.medianRate;
      const cost = await inspectProgramCost(Math.min(o!.seconds, 4), (receiver ??= await startReceiverProcess(1)).endpoint);
      results['inspect'] = { ...r, program_cost: cost };
      const rows = r.results.map((x) => [
        x.label, fmt(x.medianRate), x.ratio === undefined ? '-' : x.ratio.toFixed(3),
        x.medianRate === undefined || plain === undefined ? '-' : (x.medianRate / plain).toFixed(3),
        x.outputsPerConnection === undefined ? '-' : `${x.outputsPerConnection.toFixed(2)} ${x.unit}`,
        x.tracerCpuPercent === undefined ? '-' : `${x.tracerCpuPercent.toFixed(0)} %`, x.status,
      ]);
      const rates = r.results.filter((x) => x.rates.length).map((x) => `  ${x.mode}: ${x.rates.map((v) => fmt(v)).join(', ')}`);
      return `Payload inspection (connload --http: one HTTP/1.1 request with traceparent per connection; client and server on CPU 0, tcpspan on CPU 1; ${o!.rounds} rounds x ${o!.seconds} s)\n` +
        table(['mode', 'conn/s', 'ratio to none', 'ratio to plain bridge', 'output/conn', 'tracer CPU', 'status'], rows, [false, true, true, true, true, true, false]) +
        `\nrates per run (connections/s):\n${rates.join('\n')}\n` +
        `Kernel run time with both options on (kernel.bpf_stats_enabled; ${fmt(cost.connections)} connections)\n` +
        table(['program', 'runs/conn', 'ns/run', 'ns/conn'], cost.programs.map((x) =>
          [x.program, x.runsPerConnection.toFixed(2), fmt(x.nsPerRun), fmt(x.nsPerRun * x.runsPerConnection)]), [false, true, true, true]);
    });
    await section('options', async () => {
      const r = await sideBySide(optionTracers(async () => (receiver ??= await startReceiverProcess(1))), o!.rounds, o!.seconds, tmp, progress);
      results['options'] = r;
      const base = r.results.find((x) => x.mode === 'run-otlp')?.medianRate;
      const rows = r.results.map((x) => [
        x.label, fmt(x.medianRate), x.ratio === undefined ? '-' : x.ratio.toFixed(3),
        x.medianRate === undefined || base === undefined ? '-' : (x.medianRate / base).toFixed(3),
        x.outputsPerConnection === undefined ? '-' : `${x.outputsPerConnection.toFixed(2)} ${x.unit}`,
        x.tracerCpuPercent === undefined ? '-' : `${x.tracerCpuPercent.toFixed(0)} %`, x.status,
      ]);
      return `Default-on features switched off in turn (connload; client and server on CPU 0, tcpspan on CPU 1; ${o!.rounds} rounds x ${o!.seconds} s)\n` +
        table(['mode', 'conn/s', 'ratio to none', 'ratio to defaults', 'output/conn', 'tracer CPU', 'status'], rows, [false, true, true, true, true, true, false]);
    });
    await receiver?.close();
    receiver = undefined;

    await section('bulk', async () => {
      const secs = Math.min(o!.seconds, 4);
      const b = await bulkRate(2, secs);
      const pp: { runs: number; nsPerRun: number }[] = [];
      for (let i = 0; i < 3; i++) pp.push(await probePerSegment(40_000));
      const base = median(b.base), traced = median(b.traced);
      results['bulk'] = { ...b, ratio: traced / base, pingPong: pp };
      return `Bulk throughput, receive path (bench/bulkload.c, one connection, both ends on CPU 0; tcpspan events unfiltered on CPU 1, tcp_probe on every segment; ${secs} s runs)\n` +
        keyValues([['without', `${fmt(base, 1)} Gbit/s  (${b.base.map((x) => x.toFixed(1)).join(', ')})`],
          ['with tcpspan events', `${fmt(traced, 1)} Gbit/s  (${b.traced.map((x) => x.toFixed(1)).join(', ')})`],
          ['ratio', (traced / base).toFixed(3)],
          ['handle_probe per segment', `${fmt(median(b.probeNsPerRun))} ns/run  (${b.probeNsPerRun.map((x) => x.toFixed(0)).join(', ')}; ` +
            `${b.probeRuns.map((x) => fmt(x)).join(', ')} runs; bpf_stats on during the traced runs only)`],
          ['handle_probe, 64 B ping-pong', `${fmt(median(pp.map((x) => x.nsPerRun)))} ns/run  (${pp.map((x) => x.nsPerRun.toFixed(0)).join(', ')}; ` +
            `${fmt(pp[0]!.runs)} runs each: one per received segment, warm)`]]);
    });

    await section('programs', async () => {
      const p = await programCost(Math.min(o!.seconds, 4));
      results['programs'] = p;
      return `tcpspan's BPF programs under the connection load (kernel.bpf_stats_enabled; ${fmt(p.connections)} connections` +
        `${p.events !== undefined ? `, ${(p.events / p.connections).toFixed(2)} records per connection` : ''})\n` +
        table(['program', 'runs', 'runs/conn', 'ns/run', 'ns/conn'], p.programs.map((x) =>
          [x.program, fmt(x.runs), x.runsPerConnection.toFixed(2), fmt(x.nsPerRun), fmt(x.nsPerRun * x.runsPerConnection)]), [false, true, true, true, true]) +
        `\n  kernel time per connection (both ends): ${fmt(p.programs.reduce((s, x) => s + x.nsPerRun * x.runsPerConnection, 0))} ns` +
        '\n  runs include other sockets on the machine, which the filter turns away early.';
    });

    await section('bridge', async () => {
      const r = await fullRate(o!.bridgeSeconds);
      results['bridge'] = r;
      bridgeMsPer1000 = r.bridge_cpu_ms_per_1000_spans;
      return `The bridge at the generator's full rate (tcpspan run on CPU 1 -> OTLP gRPC -> a counting receiver on CPU 0; generator on CPU 0; ${o!.bridgeSeconds} s)\n` +
        keyValues([
          ['connections/s (offered spans/s)', `${fmt(r.connections_per_s)} (${fmt(r.offered_spans_per_s)})`],
          ['spans delivered / (2 x connections)', `${fmt(r.spans_delivered)} / ${fmt(2 * r.connections)} = ${r.delivered_ratio.toFixed(3)}`],
          ['spans/s delivered', `${fmt(r.spans_per_s)} (load start to last arrival; export went on ${r.export_tail_s} s after the load)`],
          ['bridge CPU per 1,000 spans', `${r.bridge_cpu_ms_per_1000_spans} ms (${r.bridge_cpu_percent_of_one_core} % of a core)`],
          ['close -> export', `p50 ${fmt(r.close_to_export_ms.p50)} ms, p99 ${fmt(r.close_to_export_ms.p99)} ms`],
          ['kernel records per connection', r.kernel_records_per_connection === undefined ? '- (no kernel event count in the run summary)' :
            `${r.kernel_records_per_connection} (both ends; received + lost, from tcpspan's summary)`],
          ['kernel ring bytes per connection', r.kernel_ring_bytes_per_connection === undefined ? '- (ring buffer map not found)' :
            `${fmt(r.kernel_ring_bytes_per_connection)} B (${r.kernel_bytes_per_record ? `${r.kernel_bytes_per_record} B a record, 8-byte header included: ` : ''}` +
            `ring producer position moved ${fmt(r.kernel_ring_bytes_written)} B)`],
          ['receiver CPU', `${r.receiver_cpu_percent} % (on CPU 0, beside the generator)`],
          ['tcpspan says', r.summary.line.replace(/^tcpspan: /, '')],
        ]);
    });

    await section('overload', async () => {
      const r = await overload(o!.overloadShare, o!.overloadSeconds);
      const ceiling = bridgeMsPer1000 ? Math.round((o!.overloadShare * 1e6) / bridgeMsPer1000) : undefined;
      results['overload'] = { ...r, ceiling_estimate_spans_per_s: ceiling };
      const series = r.per_second.map(([s, n]) => `${s >= r.after_load_from ? '+' : ''}${s}:${n >= 1000 ? `${(n / 1000).toFixed(1)}k` : n}`);
      const seriesLines: string[] = [];
      for (let i = 0; i < series.length; i += 12) seriesLines.push(`  ${series.slice(i, i + 12).join(' ')}`);
      return `Overload: tcpspan run limited to ${o!.overloadShare} of CPU 1 (${r.how}); generator at full rate on CPU 0; receiver on CPU 1\n` +
        keyValues([
          ['offered', `${fmt(r.connections_per_s)} connections/s = ${fmt(r.offered_spans_per_s)} spans/s for ${r.load_seconds} s`],
          ['delivered per second during the load', `min ${fmt(r.during.min)}, median ${fmt(r.during.median)}, max ${fmt(r.during.max)} (${r.during.full_seconds} whole seconds)`],
          ['ceiling at this share (estimate)', ceiling === undefined ? '- (run the bridge section for the CPU per span)' : `${fmt(ceiling)} spans/s (share / full-rate CPU per span)`],
          ['delivered during / after the load', `${fmt(r.delivered_during_load)} / ${fmt(r.delivered_after_load)} (total ${fmt(r.delivered_total)}, ${r.delivered_ratio.toFixed(3)} of 2 x connections)`],
          ['tcpspan CPU', `${r.bridge_cpu_percent_of_one_core} % of a core; throttled in ${r.throttled_periods} periods`],
          ['tcpspan says', r.summary.line.replace(/^tcpspan: /, '')],
          ['wait for the export', `until ${r.wait_end_s} s after the load started (nothing moving for 2 s, or all delivered), then SIGINT`],
          ['spans received per second', '(second since the load started: count; +: after the load ended)'],
        ]) + `\n${seriesLines.join('\n')}`;
    });

    await section('memory', async () => {
      const m = await memoryPerConnection(o!.memoryConnections, tmp);
      results['memory'] = m;
      const k = m.kernel;
      return `Memory per tracked connection end (tcpspan run --console under --expose-gc; ${fmt(m.connections_open)} connections open = ${fmt(m.tracked_ends)} ends)\n` +
        keyValues([
          ['JS heap used after forced GC', `idle ${m.heap_used_mb.idle} MiB, ${fmt(m.tracked_ends)} ends open ${m.heap_used_mb.open} MiB, all closed ${m.heap_used_mb.after_close} MiB`],
          ['JS heap per end', `${fmt(m.js_heap_bytes_per_end)} B (external memory ${fmt(m.js_external_bytes_per_end)} B per end)`],
          ['kernel socket storage per end', k ? `${fmt(k.perSocketBytes)} B: ${k.how}` : '- (no sk_storage map found)'],
          ['total per end', `${fmt(m.bytes_per_end)} B`],
          ['ends seen closing', `${fmt(m.spans_after_close)} console spans for ${fmt(m.tracked_ends)} ends` +
            (m.spans_after_close >= m.tracked_ends ? ' (every end was tracked)' : ` (${fmt(m.tracked_ends - m.spans_after_close)} not seen within 15 s of closing)`)],
          ['fixed kernel memory', `${fmt(m.kernel_fixed_bytes / 2 ** 20, 1)} MiB (${m.kernel_maps.filter((x) => x.type !== 'sk_storage').map((x) => `${x.name} ${fmt(x.bytes_memlock / 1024, 1)} KiB`).join(', ')})`],
        ]);
    });

    await section('soak', async () => {
      const r = await soak(o!.soakSeconds, o!.soakRate, o!.soakEvery, progress);
      results['soak'] = r;
      const mib = (kb: number) => fmt(kb / 1024, 1);
      return `Soak: tcpspan run (OTLP gRPC, CPU 1) under steady churn for ${fmt(r.seconds)} s (connload --rate ${r.rate_target}, CPU 0); ` +
        `memory sampled every ${r.sample_every_s} s, slopes by least squares after a ${r.warmup_s} s warm-up\n` +
        keyValues([
          ['connections', `${fmt(r.connections)} (${fmt(r.connections_per_s)}/s)`],
          ['spans delivered / (2 x connections)', `${fmt(r.spans_delivered)} / ${fmt(2 * r.connections)} = ${r.delivered_ratio.toFixed(4)}`],
          ['JS heap used after GC', `${mib(r.heap_kb.first)} -> ${mib(r.heap_kb.last)} MiB (min ${mib(r.heap_kb.min)}, max ${mib(r.heap_kb.max)}); slope ${fmt(r.heap_slope_kb_per_min, 1)} KB/min`],
          ['RSS', `${mib(r.rss_kb.first)} -> ${mib(r.rss_kb.last)} MiB (min ${mib(r.rss_kb.min)}, max ${mib(r.rss_kb.max)}); slope ${fmt(r.rss_slope_kb_per_min, 1)} KB/min`],
          ['bridge CPU', `${r.bridge_cpu_percent_of_one_core} % of a core`],
          ['tcpspan says', r.summary.line.replace(/^tcpspan: /, '')],
        ]);
    });

    await section('ceiling', async () => {
      const c = exportPathCeiling(100_000);
      results['ceiling'] = c;
      return 'The export path alone (synthetic spans -> queue -> OTLP gRPC exporter -> a null receiver; one core)\n' +
        keyValues([['spans/s', fmt(c.spansPerSec)], ['CPU per 1,000 spans', `${c.cpuMsPer1000} ms`], ['dropped', fmt(c.dropped)]]);
    });
  } finally {
    await receiver?.close();
    rmSync(tmp, { recursive: true, force: true });
  }

  const load1 = readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
  const header = `tcpspan benchmark, ${new Date(started).toISOString()}: kernel ${os.release()}, ${os.cpus().length} CPUs, ` +
    `${((Date.now() - started) / 1000).toFixed(0)} s; load average ${load0} at start, ${load1} at the end` +
    `${foreign0.length ? `; other tracers on sock:inet_sock_set_state at start: pids ${foreign0.join(', ')}` : ''}` +
    '\nOther work on this machine (builds, tests) competes for both CPUs: figures vary from run to run.';
  console.log(`\n${header}\n\n${report.join('\n\n')}`);
  mkdirSync(path.join(ROOT, 'dist', 'bench'), { recursive: true });
  writeFileSync(path.join(ROOT, 'dist', 'bench', 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
  console.log('\nfull results: dist/bench/results.json');
}

main().catch((err: unknown) => {
  console.error(`bench: ${(err as Error).stack ?? err}`);
  process.exitCode = 1;
});
