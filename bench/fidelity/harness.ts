// What every fidelity scenario needs: agents driving sockets inside the lab's namespaces,
// `tcpspan run` as users run it (a process, OTLP gRPC to a receiver that decodes the official
// protobuf messages), the kernel's own counters (nstat per namespace, `ss -ti`), and checks
// that compare the two and become rows of the table.
import { createInterface } from 'node:readline';
import path from 'node:path';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { once } from 'node:events';
import type { Lab, LabHost, SideName } from '../../test/support/netns-lab.js';
import { startOtlpReceiver, type OtlpReceiver, type ReceivedSpan } from '../../test/support/otlp-receiver.js';
import { spawnUntilReady, type ReadyProcess } from '../../test/support/ready-process.js';
import type { Command, Reply } from './agent.js';

const ROOT = path.resolve(__dirname, '..', '..', '..');
export const MAIN = path.join(ROOT, 'dist', 'src', 'cli', 'main.js');
const AGENT = path.join(__dirname, 'agent.js');

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- agents

export interface Agent {
  readonly host: LabHost;
  send(c: Command): void;
  /** The first reply (already seen or still to come) that matches; rejects after timeoutMs naming `what`. */
  wait<T extends Reply['ev']>(ev: T, id: string | undefined, timeoutMs?: number): Promise<Extract<Reply, { ev: T }>>;
  replies(): Reply[];
}

export async function startAgent(host: LabHost): Promise<Agent> {
  // `ip netns exec` execs the command in place: the child is the agent. Its stdin carries the commands.
  const child: ChildProcess = spawn('ip', ['netns', 'exec', host.ns, process.execPath, AGENT], { stdio: ['pipe', 'pipe', 'pipe'] });
  live.add(async () => { if (child.exitCode === null && child.signalCode === null) { child.kill('SIGKILL'); await once(child, 'exit'); } });
  const seen: Reply[] = [];
  const waiters: (() => void)[] = [];
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (s: string) => { stderr += s; });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try { seen.push(JSON.parse(line) as Reply); } catch { return; }
    waiters.splice(0).forEach((w) => w());
  });
  child.on('exit', () => waiters.splice(0).forEach((w) => w()));
  const agent: Agent = {
    host,
    send: (c) => { child.stdin?.write(`${JSON.stringify(c)}\n`); },
    wait: (ev, id, timeoutMs = 20_000) => new Promise((resolve, reject) => {
      const deadline = Date.now() + timeoutMs;
      const check = (): void => {
        const r = seen.find((x) => x.ev === ev && (x as { id?: string }).id === id);
        if (r) { clearTimeout(timer); resolve(r as never); return; }
        const fail = seen.find((x) => x.ev === 'fail' && (x.id === id || x.id === ''));
        if (fail || child.exitCode !== null || Date.now() > deadline) {
          clearTimeout(timer);
          reject(new Error(`agent in ${host.ns}: no '${ev}' for ${id}` +
            `${fail && fail.ev === 'fail' ? `: ${fail.error}` : child.exitCode !== null ? ` (agent exited ${child.exitCode}: ${stderr.trim()})` : ` within ${timeoutMs} ms`}`));
          return;
        }
        waiters.push(check);
      };
      const timer = setTimeout(() => waiters.splice(0).forEach((w) => w()), timeoutMs + 10);
      check();
    }),
    replies: () => seen,
  };
  await agent.wait('ready', undefined, 10_000);
  return agent;
}

// ---------------------------------------------------------------- tcpspan run

export interface Tcpspan {
  readonly receiver: OtlpReceiver;
  readonly process: ReadyProcess;
  /** SIGTERM, then the spans the receiver holds and the shutdown line. */
  stop(): Promise<{ spans: ReceivedSpan[]; summary: string; exitCode: number; misses: Record<string, number> }>;
}

const live = new Set<() => Promise<void>>();

/** Kills every tcpspan and agent a failed scenario left running (tcpspan holds programs attached). */
export async function killLeftovers(): Promise<void> {
  await Promise.all([...live].map((kill) => kill()));
  live.clear();
}

/** `tcpspan run` filtered to the lab's addresses (and to one namespace when `netns` is given), exporting to its own receiver. */
export async function startTcpspan(lab: Lab, env: Record<string, string> = {}): Promise<Tcpspan> {
  const receiver = await startOtlpReceiver();
  const args = ['run', '--addr', `10.199.${lab.subnet}.0/24`, '--addr', `fd00:199:${lab.subnet.toString(16)}::/64`];
  const proc = await spawnUntilReady(process.execPath, [MAIN, ...args], {
    ready: 'running:', timeoutMs: 30_000,
    env: {
      PATH: process.env['PATH'] ?? '', OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint, OTEL_METRICS_EXPORTER: 'none',
      OTEL_BSP_SCHEDULE_DELAY: '100', ...env,
    },
  }).catch(async (err: unknown) => { await receiver.close(); throw err; });
  let stopped: Promise<{ spans: ReceivedSpan[]; summary: string; exitCode: number; misses: Record<string, number> }> | undefined;
  const kill = async (): Promise<void> => { await proc.stop('SIGKILL'); await receiver.close(); };
  live.add(kill);
  return {
    receiver, process: proc,
    stop: () => (stopped ??= (async () => {
      const misses = recursionMisses(proc.child.pid!);
      const exitCode = await proc.stop('SIGTERM');
      live.delete(kill);
      const spans = receiver.spans();
      await receiver.close();
      const summary = proc.stderr().trim().split('\n').filter((l) => l.includes('stopped:')).pop() ?? `(no shutdown line: ${proc.stderr().trim()})`;
      return { spans, summary, exitCode, misses };
    })()),
  };
}

/**
 * Runs of this process's programs the kernel skipped because the program was already running on
 * that CPU (a tracepoint hit in softirq while the same program ran in process context): each is
 * an event tcpspan never saw, and tcpspan does not count them. Read from the program fds in
 * /proc/PID/fdinfo and `bpftool prog show` (recursion_misses, from kernel.bpf_stats-free counters).
 */
export function recursionMisses(pid: number): Record<string, number> {
  const ids = new Set<number>();
  for (const fd of readdirSync(`/proc/${pid}/fdinfo`)) {
    try {
      const m = /^prog_id:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'));
      if (m) ids.add(Number(m[1]));
    } catch { /* closed meanwhile */ }
  }
  const progs = JSON.parse(execFileSync('bpftool', ['prog', 'show', '-j'], { encoding: 'utf8' })) as { id: number; name?: string; recursion_misses?: number }[];
  const out: Record<string, number> = {};
  for (const p of progs) if (ids.has(p.id) && p.recursion_misses) out[p.name ?? String(p.id)] = p.recursion_misses;
  return out;
}

// ---------------------------------------------------------------- kernel counters

export const COUNTERS = ['TcpActiveOpens', 'TcpPassiveOpens', 'TcpAttemptFails', 'TcpEstabResets', 'TcpOutRsts', 'TcpRetransSegs',
  'TcpExtTCPSynRetrans', 'TcpExtSyncookiesSent', 'TcpExtSyncookiesRecv', 'TcpExtListenOverflows', 'TcpExtListenDrops', 'TcpExtTCPReqQFullDoCookies'] as const;
export type Counter = (typeof COUNTERS)[number];
export type Deltas = Record<SideName, Record<Counter, number>>;

export async function snapshot(lab: Lab): Promise<Record<SideName, Record<string, number>>> {
  const [a, b] = await Promise.all([lab.a.nstat(), lab.b.nstat()]);
  return { a, b };
}

export function deltas(before: Record<SideName, Record<string, number>>, after: Record<SideName, Record<string, number>>): Deltas {
  const side = (s: SideName) => Object.fromEntries(COUNTERS.map((c) => [c, (after[s][c] ?? 0) - (before[s][c] ?? 0)])) as Record<Counter, number>;
  return { a: side('a'), b: side('b') };
}

export interface SsInfo {
  bytesAcked: number;
  bytesReceived: number;
  /** tp->total_retrans: every segment retransmitted over the connection's life */
  totalRetrans: number;
  rttMs: number;
  unacked: number;
}

/** `ss -tin` for the established socket with local port `lport` and peer port `rport` in `host`'s namespace. */
export async function ssInfo(host: LabHost, lport: number, rport: number): Promise<SsInfo | undefined> {
  const r = await host.exec(['ss', '-tinH', 'state', 'established', `( sport = :${lport} and dport = :${rport} )`]);
  const text = r.stdout;
  if (!text.trim()) return undefined;
  const num = (re: RegExp): number => Number(re.exec(text)?.[1] ?? 0);
  return {
    bytesAcked: num(/\bbytes_acked:(\d+)/), bytesReceived: num(/\bbytes_received:(\d+)/),
    totalRetrans: num(/\bretrans:\d+\/(\d+)/), rttMs: num(/\brtt:([\d.]+)\//), unacked: num(/\bunacked:(\d+)/),
  };
}

/**
 * Waits until the socket has no unacknowledged segment and `bytes` of payload acknowledged, then
 * returns its ss. Clients run in a, servers in b: a client's bytes_acked counts its SYN too, a
 * server's does not (its socket starts past the SYN-ACK).
 */
export async function ssWhenAcked(host: LabHost, lport: number, rport: number, bytes: number, timeoutMs = 20_000): Promise<SsInfo> {
  const deadline = Date.now() + timeoutMs;
  const need = bytes + (host.side === 'a' ? 1 : 0);
  for (;;) {
    const s = await ssInfo(host, lport, rport);
    if (s && s.unacked === 0 && s.bytesAcked >= need) return s;
    if (Date.now() > deadline) throw new Error(`ss in ${host.ns}: ${lport}->${rport} not all acknowledged within ${timeoutMs} ms: ${JSON.stringify(s)}`);
    await sleep(20);
  }
}

/** Runs a command in a namespace and throws with its stderr when it fails. */
export async function must(host: LabHost, cmd: string[], input?: string): Promise<void> {
  const r = await host.exec(cmd, { ...(input !== undefined && { input }) });
  if (r.code !== 0) throw new Error(`${host.ns}: \`${cmd.join(' ')}\` failed: ${r.stderr.trim() || `exit ${r.code}`}`);
}

// ---------------------------------------------------------------- spans

export const attr = (s: ReceivedSpan, k: string): unknown => s.attributes[k];
const KIND: Record<string, string> = { SPAN_KIND_CLIENT: 'client', SPAN_KIND_SERVER: 'server', SPAN_KIND_INTERNAL: 'internal' };
export const kindOf = (s: ReceivedSpan): string => KIND[s.kindName] ?? s.kindName;

/** One end as the table shows it: kind, close reason/initiator, status and error.type. */
export function endText(s: ReceivedSpan): string {
  const initiator = attr(s, 'tcp.close.initiator');
  const status = s.status.code === 2 ? `ERROR ${String(attr(s, 'error.type') ?? '')}`.trim() : s.status.code === 1 ? 'OK' : 'unset';
  const extra = [attr(s, 'tcpspan.open_before_start') === true ? 'open_before_start' : '', attr(s, 'tcpspan.kernel_events_lost') === true ? 'events_lost' : '']
    .filter(Boolean).join(' ');
  return `${kindOf(s)} ${String(attr(s, 'tcp.close.reason'))}${initiator ? `/${String(initiator)}` : ''} ${status}${extra ? ` ${extra}` : ''}`;
}

/** Ends counted and grouped: "2× client fin/local unset; server fin/peer unset". */
export function endsText(ends: string[]): string {
  const counts = new Map<string, number>();
  for (const e of [...ends].sort()) counts.set(e, (counts.get(e) ?? 0) + 1);
  return [...counts].map(([e, n]) => (n > 1 ? `${n}× ${e}` : e)).join('; ') || 'no spans';
}

export function sideOf(lab: Lab, s: ReceivedSpan): SideName | undefined {
  const ns = attr(s, 'tcpspan.netns');
  return ns === lab.a.netnsInode() ? 'a' : ns === lab.b.netnsInode() ? 'b' : undefined;
}

/** Segments retransmitted and sent, by the span's retransmit events (all types, or one). */
export function retransmitEvents(s: ReceivedSpan, type?: string): number {
  return s.events.filter((e) => e.name === 'tcp.retransmit' && e.attributes['tcp.retransmit.sent'] !== false &&
    (type === undefined || e.attributes['tcp.retransmit.type'] === type))
    .reduce((n, e) => n + Number(e.attributes['tcp.retransmit.segments'] ?? 1), 0);
}

/** The state an end left for `closed`, from its state_change events. */
export function stateBeforeClose(s: ReceivedSpan): string | undefined {
  const states = s.events.filter((e) => e.name === 'tcp.state_change').map((e) => String(e.attributes['network.connection.state']));
  const i = states.lastIndexOf('closed');
  return i > 0 ? states[i - 1] : undefined;
}

/** How the spans group into traces: "3 × {client, server←client}" etc. */
export function tracesText(spans: ReceivedSpan[]): string {
  const byTrace = new Map<string, ReceivedSpan[]>();
  for (const s of spans) byTrace.set(s.traceId, [...(byTrace.get(s.traceId) ?? []), s]);
  const shapes = [...byTrace.values()].map((ss) => {
    const ids = new Map(ss.map((s) => [s.spanId, kindOf(s)]));
    return `{${ss.map((s) => (s.parentSpanId ? `${kindOf(s)}←${ids.get(s.parentSpanId) ?? 'missing'}` : kindOf(s))).sort().join(', ')}}`;
  });
  const counts = new Map<string, number>();
  for (const sh of shapes.sort()) counts.set(sh, (counts.get(sh) ?? 0) + 1);
  return [...counts].map(([sh, n]) => `${n} × ${sh}`).join(', ') || 'none';
}

// ---------------------------------------------------------------- checks

export interface Check {
  what: string;
  expected: string;
  observed: string;
  ok: boolean;
}

/** A check that holds when the two texts are equal. */
export const same = (what: string, expected: string, observed: string): Check => ({ what, expected, observed, ok: expected === observed });
