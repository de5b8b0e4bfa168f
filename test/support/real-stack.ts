// The real observability stack for tests: the OpenTelemetry Collector and Jaeger v2 built from
// their Go modules (scripts/build-stack) and run by scripts/stack, exactly as a user runs them,
// on free loopback ports and with its own state directory so a user's stack on the default ports
// is left alone. Plus a small client for Jaeger's HTTP query API (the one its UI uses).
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';

export const ROOT = path.resolve(__dirname, '..', '..', '..');
const BUILD_STACK = path.join(ROOT, 'scripts', 'build-stack');
const STACK = path.join(ROOT, 'scripts', 'stack');
/** Fixed, so a run that crashed leaves its processes where the next run's `down` finds them. */
export const TEST_STACK_DIR = path.join(ROOT, '.tcpspan', 'test-stack');

export interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion; never rejects for a non-zero exit. */
export function runCommand(file: string, args: string[], opts: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<CommandResult> {
  return new Promise((resolve, reject) => {
    execFile(file, args, { env: opts.env ?? process.env, timeout: opts.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      if (err && typeof err.code !== 'number' && !err.killed) return reject(err);
      resolve({ code, stdout, stderr: err?.killed ? `${stderr}\n(killed after ${opts.timeoutMs} ms)` : stderr });
    });
  });
}

// ---------------------------------------------------------------- the toolchain and the build

/** Why the stack cannot be built here (no Go toolchain), or undefined when it can. */
export async function missingToolchain(): Promise<string | undefined> {
  const r = await runCommand(BUILD_STACK, ['--find-go']);
  if (r.code === 0) return undefined;
  if (r.code === 3) return r.stderr.trim();
  throw new Error(`scripts/build-stack --find-go failed (exit ${r.code}): ${r.stderr.trim()}`);
}

export interface StackBinaries {
  otelcol: string;
  jaeger: string;
}

/**
 * Builds the collector and Jaeger when out of date (minutes the first time), and returns their
 * paths. The build's progress lines go to this process's stderr, so a long first build shows.
 */
export async function buildStack(timeoutMs: number): Promise<StackBinaries> {
  const child = spawn(BUILD_STACK, [], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGTERM'), timeoutMs);
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  clearTimeout(timer);
  if (code !== 0) throw new Error(`scripts/build-stack failed (${signal ? `killed by ${signal} after ${timeoutMs} ms` : `exit ${code}`}): see its messages above`);
  const [otelcol, jaeger] = out.trim().split('\n');
  return { otelcol: otelcol!, jaeger: jaeger! };
}

/** The releases scripts/build-stack builds: { otelcol, jaeger, 'jaeger-module' }. */
export async function stackVersions(): Promise<Record<string, string>> {
  const r = await runCommand(BUILD_STACK, ['--versions']);
  if (r.code !== 0) throw new Error(`scripts/build-stack --versions failed: ${r.stderr}`);
  return Object.fromEntries(r.stdout.trim().split('\n').map((l) => l.split(' ') as [string, string]));
}

// ---------------------------------------------------------------- the stack

/** Free loopback ports, each bound until all are chosen so none is handed out twice. */
export async function freePorts(n: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < n; i++) {
      const s = net.createServer();
      await new Promise<void>((resolve, reject) => { s.once('error', reject); s.listen(0, '127.0.0.1', resolve); });
      servers.push(s);
    }
    return servers.map((s) => (s.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export interface Stack {
  /** host:port of each listener, as scripts/stack's TCPSPAN_STACK_* variables set them. */
  readonly otlp: string;
  readonly prometheus: string;
  readonly jaeger: string;
  /** What tcpspan is given: http://<otlp>. */
  readonly otlpEndpoint: string;
  readonly env: NodeJS.ProcessEnv;
  readonly dir: string;
  /** `scripts/stack up`: starts what is not running, waits until healthy. */
  up(): Promise<CommandResult>;
  down(): Promise<CommandResult>;
  status(): Promise<CommandResult>;
  /** The pid of a running component, from scripts/stack's pid file. */
  pid(name: 'collector' | 'jaeger'): number;
  log(name: 'collector' | 'jaeger'): string;
}

const PORT_VARS = ['OTLP', 'OTLP_HTTP', 'PROMETHEUS', 'HEALTH', 'JAEGER', 'JAEGER_GRPC', 'JAEGER_OTLP', 'JAEGER_HEALTH'] as const;

/** A stack on free ports in TEST_STACK_DIR; nothing runs until up(). */
export async function testStack(): Promise<Stack> {
  const ports = await freePorts(PORT_VARS.length);
  const at = Object.fromEntries(PORT_VARS.map((v, i) => [v, `127.0.0.1:${ports[i]}`])) as Record<(typeof PORT_VARS)[number], string>;
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    TCPSPAN_STACK_DIR: TEST_STACK_DIR,
    ...Object.fromEntries(PORT_VARS.map((v) => [`TCPSPAN_STACK_${v}`, at[v]])),
  };
  const stack = (cmd: string, timeoutMs = 120_000) => runCommand(STACK, [cmd], { env, timeoutMs });
  return {
    otlp: at.OTLP, prometheus: at.PROMETHEUS, jaeger: at.JAEGER, otlpEndpoint: `http://${at.OTLP}`, env, dir: TEST_STACK_DIR,
    up: () => stack('up'),
    down: () => stack('down'),
    status: () => stack('status'),
    pid: (name) => Number(readFileSync(path.join(TEST_STACK_DIR, `${name}.pid`), 'utf8').trim()),
    log: (name) => { try { return readFileSync(path.join(TEST_STACK_DIR, `${name}.log`), 'utf8'); } catch { return ''; } },
  };
}

/** Stops a stack a crashed run left in TEST_STACK_DIR (ports do not matter to `down`: it goes by pid files). */
export async function stopLeftoverTestStack(): Promise<void> {
  await runCommand(STACK, ['down'], { env: { ...process.env, TCPSPAN_STACK_DIR: TEST_STACK_DIR } });
}

// ---------------------------------------------------------------- HTTP

export async function httpGet(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(url, { signal: AbortSignal.timeout(10_000) });
  return { status: res.status, body: await res.text() };
}

// ---------------------------------------------------------------- Jaeger's query API

export interface JaegerKeyValue {
  key: string;
  type: string;
  value: string | number | boolean;
}

export interface JaegerSpan {
  traceID: string;
  spanID: string;
  operationName: string;
  references: { refType: string; traceID: string; spanID: string }[];
  /** microseconds since the epoch, and microseconds */
  startTime: number;
  duration: number;
  tags: JaegerKeyValue[];
  logs: { timestamp: number; fields: JaegerKeyValue[] }[];
  processID: string;
  warnings: string[] | null;
}

export interface JaegerTrace {
  traceID: string;
  spans: JaegerSpan[];
  processes: Record<string, { serviceName: string; tags: JaegerKeyValue[] }>;
  warnings: string[] | null;
}

export interface TraceSearch {
  service: string;
  operation?: string;
  /** What the UI's Tags field holds, as logfmt: `key=value key=value`. */
  tags?: string;
  limit?: number;
  lookback?: string;
}

/** The UI's Tags field (logfmt) as the `tags` parameter the UI sends: a JSON object of strings. */
export function logfmtToTags(logfmt: string): Record<string, string> {
  return Object.fromEntries(logfmt.trim().split(/\s+/).filter(Boolean).map((kv) => {
    const i = kv.indexOf('=');
    if (i <= 0) throw new Error(`not logfmt key=value: '${kv}'`);
    return [kv.slice(0, i), kv.slice(i + 1)];
  }));
}

/** GET /api/traces with the parameters the Jaeger UI's search form sends. */
export function traceSearchUrl(jaeger: string, q: TraceSearch): string {
  const p = new URLSearchParams({ service: q.service });
  if (q.operation) p.set('operation', q.operation);
  if (q.tags) p.set('tags', JSON.stringify(logfmtToTags(q.tags)));
  p.set('lookback', q.lookback ?? '1h');
  p.set('limit', String(q.limit ?? 20));
  return `http://${jaeger}/api/traces?${p}`;
}

async function jaegerData<T>(url: string): Promise<T> {
  const r = await httpGet(url);
  if (r.status !== 200) throw new Error(`GET ${url}: HTTP ${r.status}: ${r.body.slice(0, 500)}`);
  const body = JSON.parse(r.body) as { data: T; errors: unknown };
  if (body.errors) throw new Error(`GET ${url}: ${JSON.stringify(body.errors)}`);
  return body.data;
}

export function findTraces(jaeger: string, q: TraceSearch): Promise<JaegerTrace[]> {
  return jaegerData<JaegerTrace[]>(traceSearchUrl(jaeger, q));
}

export async function getTrace(jaeger: string, traceId: string): Promise<JaegerTrace | undefined> {
  const r = await httpGet(`http://${jaeger}/api/traces/${traceId}`);
  if (r.status === 404) return undefined;
  if (r.status !== 200) throw new Error(`GET /api/traces/${traceId}: HTTP ${r.status}: ${r.body.slice(0, 500)}`);
  return (JSON.parse(r.body) as { data: JaegerTrace[] }).data[0];
}

/** A span's tags as a plain object. */
export function tagMap(kvs: JaegerKeyValue[]): Record<string, string | number | boolean> {
  return Object.fromEntries(kvs.map((t) => [t.key, t.value]));
}

/** Polls `probe` every 250 ms until it returns something other than undefined, or throws at the deadline. */
export async function eventually<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not after ${timeoutMs} ms${last ? ` (last error: ${String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
