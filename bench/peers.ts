// The tracers run side by side with tcpspan: libbpf-tools tcplife and tcpstates, a tcplife-like
// bpftrace script (bench/tcplife.bt), and tcpspan's own commands. Each is started pinned to
// CPU 1 with its output going to a file, waited for until its program is attached, and stopped
// with SIGINT; what it wrote for the bench's connections is then counted, because a tracer that
// failed to start (or lost most events) looks free.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { createReadStream, existsSync, openSync, closeSync } from 'node:fs';
import path from 'node:path';
import { hasAttachedStateTracepoint } from './kernel-objects.js';
import { track } from './children.js';
import type { ReceiverProcess } from './counting-receiver.js';
import { spawnUntilReady } from '../test/support/ready-process.js';

const ROOT = path.resolve(__dirname, '..', '..');
export const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const BPFTRACE_SCRIPT = path.join(ROOT, 'bench', 'tcplife.bt');
const TRACER_CPU = '1';
const READY_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 20_000;

export interface TracerOutput {
  /** units of output about the bench's connections: lines, events or spans */
  outputs: number;
  unit: string;
  /** the least output per connection that means it traced every connection (one per end) */
  expectedPerConnection: number;
  /** events the tracer itself says it lost */
  lost?: number;
  note?: string;
}

export interface RunningTracer {
  readonly pid: number;
  /** SIGINT, wait for exit, count what it wrote about `port`. */
  stop(): Promise<TracerOutput>;
}

export interface Tracer {
  readonly key: string;
  readonly label: string;
  /** undefined: available; else why not (not installed, ...) */
  readonly unavailable?: string;
  start(port: number, outFile: string): Promise<RunningTracer>;
}

// ---------------------------------------------------------------- installing the peers

export interface Peers {
  tcplife?: string;
  tcpstates?: string;
  bpftrace?: string;
  notes: string[];
}

const say = (m: string): void => { process.stderr.write(`bench: ${m}\n`); };

function onPath(name: string): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(':'), '/usr/sbin', '/sbin', '/usr/bin', '/usr/local/sbin'];
  for (const d of dirs) {
    const p = path.join(d, name);
    if (d && existsSync(p)) return p;
  }
  return undefined;
}

/** libbpf-tools binaries go by different names across distributions: tcplife, libbpf-tcplife, tcplife.bpf. */
function findLibbpfTool(tool: string): string | undefined {
  for (const n of [tool, `libbpf-${tool}`, `${tool}.bpf`, `${tool}-bpf`]) {
    const p = onPath(n);
    if (p) return p;
  }
  const listed = spawnSync('dpkg', ['-L', 'libbpf-tools'], { encoding: 'utf8' });
  if (listed.status !== 0) return undefined;
  return listed.stdout.split('\n').find((f) => new RegExp(`/(libbpf-)?${tool}([.-]bpf)?$`).test(f) && existsSync(f));
}

function locate(): Peers {
  const peers: Peers = { notes: [] };
  const tl = findLibbpfTool('tcplife'), ts = findLibbpfTool('tcpstates'), bt = onPath('bpftrace');
  if (tl) peers.tcplife = tl;
  if (ts) peers.tcpstates = ts;
  if (bt) peers.bpftrace = bt;
  return peers;
}

/**
 * Finds the peers, installing Debian's libbpf-tools and bpftrace when missing (apt-get update
 * once, then install), and mounts tracefs, which libbpf-tools' tracepoint tools need.
 */
export function ensurePeers(install: boolean): Peers {
  let peers = locate();
  const missing = [...(!peers.tcplife || !peers.tcpstates ? ['libbpf-tools'] : []), ...(!peers.bpftrace ? ['bpftrace'] : [])];
  if (missing.length) {
    if (!install) {
      peers.notes.push(`not installed: ${missing.join(', ')} (--no-install given)`);
    } else if (!onPath('apt-get')) {
      peers.notes.push(`not installed: ${missing.join(', ')} (no apt-get here: install them with the package manager)`);
    } else {
      const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
      say(`installing the peers from Debian: apt-get update; apt-get install -y --no-install-recommends ${missing.join(' ')}`);
      const upd = spawnSync('apt-get', ['update', '-qq'], { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' });
      const inst = upd.status === 0
        ? spawnSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8' })
        : upd;
      if (inst.status !== 0) {
        const why = (inst.stderr ?? '').trim().split('\n').pop() ?? '';
        peers.notes.push(`apt-get ${upd.status === 0 ? 'install' : 'update'} failed (${why}): ${missing.join(', ')} not measured`);
      }
      peers = { ...locate(), notes: peers.notes };
    }
  }
  if ((peers.tcplife || peers.tcpstates) && !existsSync('/sys/kernel/tracing/events') && !existsSync('/sys/kernel/debug/tracing/events')) {
    say('mounting tracefs (mount -t tracefs tracefs /sys/kernel/tracing): libbpf-tools attach tracepoints through it');
    const r = spawnSync('mount', ['-t', 'tracefs', 'tracefs', '/sys/kernel/tracing'], { encoding: 'utf8' });
    if (r.status !== 0) peers.notes.push(`mounting tracefs failed (${(r.stderr ?? '').trim()}): libbpf-tools tracepoint tools will not attach`);
  }
  return peers;
}

// ---------------------------------------------------------------- counting output

/** Lines of `file` that mention `port` as a whole number (not as part of a longer one). */
export async function countLinesWithPort(file: string, port: number): Promise<number> {
  return (await scanOutput(file, port)).lines;
}

/** Lines about `port`, and the events the tool says it lost ("Lost N events", bpftrace writes it into its output). */
async function scanOutput(file: string, port: number): Promise<{ lines: number; lost: number }> {
  if (!existsSync(file)) return { lines: 0, lost: 0 };
  const re = new RegExp(`(^|[^0-9])${port}([^0-9]|$)`);
  const lostRe = /^Lost (\d+) events/;
  let lines = 0, lost = 0, rest = '';
  const take = (l: string): void => {
    if (re.test(l)) lines++;
    else if (l.startsWith('Lost ')) lost += Number(lostRe.exec(l)?.[1] ?? 0);
  };
  for await (const chunk of createReadStream(file, { encoding: 'utf8', highWaterMark: 1 << 20 })) {
    const all = (rest + (chunk as string)).split('\n');
    rest = all.pop()!;
    for (const l of all) take(l);
  }
  take(rest);
  return { lines, lost };
}

async function stopChild(child: ChildProcess): Promise<string | undefined> {
  if (child.exitCode !== null || child.signalCode !== null) return `exited early (status ${child.exitCode ?? child.signalCode})`;
  const exited = once(child, 'exit');
  child.kill('SIGINT');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
  return child.signalCode === 'SIGKILL' ? `did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGINT: killed` : undefined;
}

/** A peer: a command started pinned, ready once its program sits on sock:inet_sock_set_state. */
function peerTracer(key: string, label: string, binary: string | undefined, args: (outFile: string) => string[],
  stdoutToFile: boolean, unavailableWhy: string): Tracer {
  return {
    key, label, ...(binary ? {} : { unavailable: unavailableWhy }),
    async start(port, outFile) {
      const fd = stdoutToFile ? openSync(outFile, 'w') : 'ignore';
      let stderr = '';
      const child = track(spawn('taskset', ['-c', TRACER_CPU, binary!, ...args(outFile)], { stdio: ['ignore', fd, 'pipe'] }));
      if (typeof fd === 'number') closeSync(fd);
      child.stderr!.setEncoding('utf8').on('data', (d: string) => { stderr += d; });
      const deadline = Date.now() + READY_TIMEOUT_MS;
      while (!hasAttachedStateTracepoint(child.pid!)) {
        if (child.exitCode !== null || Date.now() > deadline) {
          if (child.exitCode === null) child.kill('SIGKILL');
          throw new Error(`${label} did not attach to sock:inet_sock_set_state within ${READY_TIMEOUT_MS / 1000} s: ${stderr.trim() || '(no output)'}`);
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return {
        pid: child.pid!,
        async stop() {
          const note = await stopChild(child);
          // libbpf-tools: "lost N events on CPU #C" on stderr
          const lostErr = [...stderr.matchAll(/lost (\d+) events/gi)].reduce((s, m) => s + Number(m[1]), 0);
          const out = await scanOutput(outFile, port);
          return { outputs: out.lines, unit: 'lines', expectedPerConnection: 2, lost: lostErr + out.lost, ...(note && { note }) };
        },
      };
    },
  };
}

export function peerTracers(peers: Peers): Tracer[] {
  const missing = (what: string): string => `not installed (${what}): ${peers.notes.join('; ') || 'not found'}`;
  return [
    peerTracer('tcplife', 'libbpf-tools tcplife', peers.tcplife, () => [], true, missing('libbpf-tools')),
    peerTracer('tcpstates', 'libbpf-tools tcpstates', peers.tcpstates, () => [], true, missing('libbpf-tools')),
    peerTracer('bpftrace', 'bpftrace tcplife.bt (lines to a file)', peers.bpftrace, (out) => ['-o', out, BPFTRACE_SCRIPT], false, missing('bpftrace')),
  ];
}

// ---------------------------------------------------------------- tcpspan through its CLI

export interface RunSummary {
  line: string;
  kernelEvents?: number;
  spans?: number;
  lostKernelEvents?: number;
  dropped?: string;
}

/** The last line `tcpspan run` prints ("stopped: K kernel events, S spans (...), lost kernel events L, spans dropped: ..."). */
export function parseRunSummary(stderr: string): RunSummary {
  const line = stderr.trim().split('\n').filter((l) => l.includes('stopped:')).pop() ?? stderr.trim().split('\n').pop() ?? '';
  const num = (re: RegExp): number | undefined => { const m = re.exec(line); return m ? Number(m[1]) : undefined; };
  const s: RunSummary = { line };
  const k = num(/(\d+) kernel events/), sp = num(/(\d+) spans/), l = num(/lost kernel events (\d+)/);
  if (k !== undefined) s.kernelEvents = k;
  if (sp !== undefined) s.spans = sp;
  if (l !== undefined) s.lostKernelEvents = l;
  const d = /spans dropped: (.*)$/.exec(line);
  if (d) s.dropped = d[1]!;
  return s;
}

export interface EventsSummary { submitted: number; received: number; lost: Record<string, number> }

export function parseEventsSummary(stderr: string): EventsSummary | undefined {
  for (const l of stderr.trim().split('\n').reverse()) {
    try {
      const j = JSON.parse(l) as { tcpspan_events_summary?: EventsSummary };
      if (j.tcpspan_events_summary) return j.tcpspan_events_summary;
    } catch { /* not the summary */ }
  }
  return undefined;
}

function startTcpspan(cmd: string, args: string[], outFile: string, env?: NodeJS.ProcessEnv) {
  const fd = openSync(outFile, 'w');
  const p = spawnUntilReady('taskset', ['-c', TRACER_CPU, process.execPath, MAIN, cmd, ...args],
    { ready: cmd === 'events' ? 'capturing' : 'running:', stdout: fd, timeoutMs: READY_TIMEOUT_MS, ...(env && { env }) });
  return p.then((r) => { track(r.child); return r; }).finally(() => closeSync(fd));
}

/** `tcpspan run` exporting over OTLP to the counting receiver, with extra environment (inspect options). */
function runOtlpTracer(key: string, label: string, receiver: () => Promise<ReceiverProcess>, extraEnv: NodeJS.ProcessEnv = {}): Tracer {
  return {
    key, label,
    async start(port, outFile) {
      const r = await receiver();
      await r.reset();
      const p = await startTcpspan('run', ['--port', String(port)], outFile,
        { PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: r.endpoint, ...extraEnv });
      return {
        pid: p.child.pid!,
        async stop() {
          await p.stop('SIGINT'); // flushes what it holds before exiting
          const s = parseRunSummary(p.stderr());
          return { outputs: await r.count(), unit: 'spans', expectedPerConnection: 2,
            ...(s.lostKernelEvents !== undefined && { lost: s.lostKernelEvents }), ...(s.dropped && s.dropped !== 'none' && { note: `dropped ${s.dropped}` }) };
        },
      };
    },
  };
}

/** The plain bridge and the bridge with each inspect option (payload programs), for `--only inspect`. */
export function inspectTracers(receiver: () => Promise<ReceiverProcess>): Tracer[] {
  return [
    runOtlpTracer('run-otlp', 'tcpspan run (plain bridge)', receiver),
    runOtlpTracer('run-traceparent', 'tcpspan run, inspect.traceparent', receiver, { TCPSPAN_INSPECT_TRACEPARENT: 'true' }),
    runOtlpTracer('run-protocols', 'tcpspan run, inspect.protocols', receiver, { TCPSPAN_INSPECT_PROTOCOLS: 'true' }),
    runOtlpTracer('run-inspect-both', 'tcpspan run, both inspect options', receiver,
      { TCPSPAN_INSPECT_TRACEPARENT: 'true', TCPSPAN_INSPECT_PROTOCOLS: 'true' }),
  ];
}

/** `tcpspan run` with each default-on feature switched off in turn, and with sampling: what each costs. */
export function optionTracers(receiver: () => Promise<ReceiverProcess>): Tracer[] {
  return [
    runOtlpTracer('run-otlp', 'tcpspan run (defaults)', receiver),
    runOtlpTracer('run-no-detect', 'tcpspan run, detect.enabled=false', receiver, { TCPSPAN_DETECT: 'false' }),
    runOtlpTracer('run-no-attribution', 'tcpspan run, attribution.cgroups and serviceFromProcess false', receiver,
      { TCPSPAN_ATTRIBUTION_CGROUPS: 'false', TCPSPAN_SERVICE_FROM_PROCESS: 'false' }),
    runOtlpTracer('run-no-syn-timing', 'tcpspan run, capture.synTiming=false', receiver, { TCPSPAN_SYN_TIMING: 'false' }),
    runOtlpTracer('run-sampling', 'tcpspan run, sampling.ratio=0.1', receiver, { TCPSPAN_SAMPLING_RATIO: '0.1' }),
  ];
}

export function tcpspanTracers(receiver: () => Promise<ReceiverProcess>): Tracer[] {
  const node = startTcpspan;
  return [
    {
      key: 'events', label: 'tcpspan events (JSON lines to a file)',
      async start(port, outFile) {
        const p = await node('events', ['--port', String(port)], outFile);
        return {
          pid: p.child.pid!,
          async stop() {
            await p.stop('SIGINT');
            const s = parseEventsSummary(p.stderr());
            const lines = await countLinesWithPort(outFile, port);
            const lost = s ? Object.values(s.lost).reduce((a, b) => a + b, 0) : undefined;
            return { outputs: lines, unit: 'events', expectedPerConnection: 2, ...(lost !== undefined && { lost }),
              ...(!s && { note: `no summary: ${p.stderr().trim().split('\n').pop()}` }) };
          },
        };
      },
    },
    {
      key: 'run-console', label: 'tcpspan run --console (lines to a file)',
      async start(port, outFile) {
        const p = await node('run', ['--console', '--port', String(port)], outFile);
        return {
          pid: p.child.pid!,
          async stop() {
            await p.stop('SIGINT');
            const s = parseRunSummary(p.stderr());
            return { outputs: await countLinesWithPort(outFile, port), unit: 'spans', expectedPerConnection: 2,
              ...(s.lostKernelEvents !== undefined && { lost: s.lostKernelEvents }), ...(s.dropped && s.dropped !== 'none' && { note: `dropped ${s.dropped}` }) };
          },
        };
      },
    },
    runOtlpTracer('run-otlp', 'tcpspan run (OTLP to a counting receiver on CPU 1)', receiver),
  ];
}
