// The bridge end to end (tcpspan run -> OTLP gRPC -> a local receiver), its memory per tracked
// connection, and the export path's ceiling. Part of npm run bench; prints figures, asserts nothing.
import { spawn, execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { runConnload } from './loadgen.js';
import { startCountingReceiver } from './counting-receiver.js';
import { spawnUntilReady, type ReadyProcess } from '../test/support/ready-process.js';

const ROOT = path.resolve(__dirname, '..', '..');
const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const CLK_TCK = 100;

type Bridge = ReadyProcess;

function startBridge(args: string[], env: Record<string, string>): Promise<Bridge> {
  return spawnUntilReady('taskset', ['-c', '1', process.execPath, MAIN, 'run', ...args], {
    ready: 'running:', stdout: 'ignore', env: { PATH: process.env['PATH'] ?? '', ...env },
  });
}

async function stopBridge(b: Bridge): Promise<string> {
  await b.stop();
  return b.stderr().trim().split('\n').pop() ?? '';
}

function procStat(pid: number): { cpuMs: number; rssBytes: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return { cpuMs: ((Number(f[11]) + Number(f[12])) * 1000) / CLK_TCK, rssBytes: Number(f[21]) * 4096 };
}

function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? NaN;
}

/** Full connection rate through the whole bridge; every span counted at the receiver. */
export async function endToEnd(port: number, seconds: number) {
  const receiver = await startCountingReceiver();
  try {
    const bridge = await startBridge(['--port', String(port)], { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint });
    const before = procStat(bridge.child.pid!);
    const load = await runConnload({ port, seconds, cpu: 0, serverCpu: 0 });
    const during = procStat(bridge.child.pid!);
    const summary = await stopBridge(bridge);
    const delivered = receiver.endTimes.length;
    const latenciesMs = receiver.endTimes.map((end, i) => Number(receiver.arrivals[i]! - end) / 1e6).sort((a, b) => a - b);
    const expected = load.connections * 2;
    return {
      connections: load.connections,
      connections_per_s: Math.round(load.rate),
      spans_delivered: delivered,
      delivered_ratio: +(delivered / expected).toFixed(4),
      spans_per_s: Math.round(delivered / load.seconds),
      bridge_cpu_ms_per_1000_spans: +(((during.cpuMs - before.cpuMs) / delivered) * 1000).toFixed(1),
      bridge_cpu_percent_of_one_core: +(((during.cpuMs - before.cpuMs) / (load.seconds * 1000)) * 100).toFixed(1),
      close_to_export_ms: { p50: +percentile(latenciesMs, 50).toFixed(1), p99: +percentile(latenciesMs, 99).toFixed(1) },
      bridge_summary: summary,
    };
  } finally {
    receiver.close();
  }
}

/**
 * Resident memory of tcpspan run per tracked connection end, with `n` connections held open.
 * The server ends live here and the client ends in a child process: each process stays
 * under the 20,000-descriptor hard limit, which cannot be raised without CAP_SYS_RESOURCE.
 */
export async function memoryPerConnection(port: number, n: number) {
  const bridge = await startBridge(['--port', String(port), '--console'], {});
  const accepted: net.Socket[] = [];
  const server = net.createServer((s) => { accepted.push(s); }).listen(port, '127.0.0.1', 4096);
  await once(server, 'listening');
  const clients = spawn(process.execPath, ['-e', `
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
  try {
    await new Promise((r) => setTimeout(r, 500));
    const before = procStat(bridge.child.pid!).rssBytes;
    // the clients report 'open', or die: never wait on a dead child
    await Promise.race([once(clients.stdout!, 'data'), once(clients, 'exit').then(() => {
      throw new Error('bench: the client process holding the connections exited early');
    })]);
    while (accepted.length < n) await new Promise((r) => setTimeout(r, 50));
    await new Promise((r) => setTimeout(r, 1000));
    const after = procStat(bridge.child.pid!).rssBytes;
    return { connections_open: n, tracked_ends: 2 * n, rss_before_mb: +(before / 2 ** 20).toFixed(1), rss_after_mb: +(after / 2 ** 20).toFixed(1),
      bytes_per_tracked_end: Math.round((after - before) / (2 * n)) };
  } finally {
    if (clients.exitCode === null) {
      clients.stdin!.end();
      await once(clients, 'exit');
    }
    for (const s of accepted) s.destroy();
    server.close();
    await stopBridge(bridge);
  }
}

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
