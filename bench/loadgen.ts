// Builds and runs the C load generators (bench/connload.c, bench/bulkload.c).
// They are C rather than Node because the benchmark needs a load whose own
// cost per connection is tiny and steady, so that what changes between runs
// is tcpspan's overhead, not the generator's.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

// This file runs as dist/bench/loadgen.js.
const ROOT = path.resolve(__dirname, '..', '..');
const SOURCE_DIR = path.join(ROOT, 'bench');
const BIN_DIR = path.join(ROOT, 'dist', 'bench', 'bin');
const CC_FLAGS = ['-O2', '-Wall', '-Werror'];
/** Included by every load generator source in bench/. */
const COMMON_HEADER = 'loadgen-common.h';
// Slack on top of --seconds before a run counts as hung: the tools exit by
// themselves at most a few seconds after their deadline.
const KILL_SLACK_MS = 15_000;

export interface LoadgenBinaries {
  connload: string;
  bulkload: string;
}

export interface ConnloadOptions {
  port: number;
  seconds: number;
  /** Loopback only: 127.0.0.0/8 or ::1. Default 127.0.0.1. */
  addr?: string;
  /** CPU to pin the client to; unpinned when absent. */
  cpu?: number;
  /** CPU to pin the accept-and-close server to; unpinned when absent. */
  serverCpu?: number;
  /** each connection carries one small HTTP/1.1 request with a traceparent header (connload --http) */
  http?: boolean;
  /** at most this many connections a second, evenly paced (connload --rate); default: as fast as the core allows */
  rate?: number;
}

export interface ConnloadResult {
  connections: number;
  seconds: number;
  rate: number;
  failed: number;
}

export interface BulkloadOptions {
  port: number;
  seconds: number;
  /** Loopback only: 127.0.0.0/8 or ::1. Default 127.0.0.1. */
  addr?: string;
  /** CPU to pin the sender to; unpinned when absent. */
  cpu?: number;
  /** CPU to pin the receiver to; unpinned when absent. */
  serverCpu?: number;
}

export interface BulkloadResult {
  bytes: number;
  seconds: number;
  gbit_per_s: number;
}

/** Compiles both load generators into dist/bench/bin, skipping up-to-date ones. */
export async function buildLoadgens(): Promise<LoadgenBinaries> {
  fs.mkdirSync(BIN_DIR, { recursive: true });
  const [connload, bulkload] = await Promise.all([build('connload'), build('bulkload')]);
  return { connload, bulkload };
}

export async function runConnload(opts: ConnloadOptions): Promise<ConnloadResult> {
  const { connload } = await buildLoadgens();
  const out = await runJson(connload, [...commonArgs(opts), ...(opts.http ? ['--http'] : []), ...(opts.rate ? ['--rate', String(opts.rate)] : [])], opts.seconds);
  return {
    connections: numberField(out, 'connections', 'connload'),
    seconds: numberField(out, 'seconds', 'connload'),
    rate: numberField(out, 'rate', 'connload'),
    failed: numberField(out, 'failed', 'connload'),
  };
}

export async function runBulkload(opts: BulkloadOptions): Promise<BulkloadResult> {
  const { bulkload } = await buildLoadgens();
  const out = await runJson(bulkload, commonArgs(opts), opts.seconds);
  return {
    bytes: numberField(out, 'bytes', 'bulkload'),
    seconds: numberField(out, 'seconds', 'bulkload'),
    gbit_per_s: numberField(out, 'gbit_per_s', 'bulkload'),
  };
}

function commonArgs(opts: ConnloadOptions | BulkloadOptions): string[] {
  const args = ['--port', String(opts.port), '--seconds', String(opts.seconds)];
  if (opts.addr !== undefined) args.push('--addr', opts.addr);
  if (opts.cpu !== undefined) args.push('--cpu', String(opts.cpu));
  if (opts.serverCpu !== undefined) args.push('--server-cpu', String(opts.serverCpu));
  return args;
}

async function build(name: string): Promise<string> {
  const source = path.join(SOURCE_DIR, `${name}.c`);
  const binary = path.join(BIN_DIR, name);
  const sourceMtime = mtimeMs(source);
  if (sourceMtime === undefined) {
    throw new Error(`${source} is missing: the load generator sources ship in bench/; restore them from git`);
  }
  // Both programs include the shared header: a change there must rebuild them too.
  const header = path.join(SOURCE_DIR, COMMON_HEADER);
  const headerMtime = mtimeMs(header);
  if (headerMtime === undefined) {
    throw new Error(`${header} is missing: the load generator sources ship in bench/; restore them from git`);
  }
  const binaryMtime = mtimeMs(binary);
  if (binaryMtime !== undefined && binaryMtime > Math.max(sourceMtime, headerMtime)) return binary;
  // Compile to a private name then rename, so concurrent builds (or a run
  // that starts meanwhile) never see a half-written executable.
  const tmp = `${binary}.${process.pid}.tmp`;
  try {
    const r = await run('cc', [...CC_FLAGS, '-o', tmp, source], 120_000);
    if (r.code !== 0) throw new Error(`compiling ${source} failed (cc exit ${r.code}):\n${r.stderr.trim()}`);
    fs.renameSync(tmp, binary);
  } finally {
    fs.rmSync(tmp, { force: true });
  }
  return binary;
}

function mtimeMs(file: string): number | undefined {
  try {
    return fs.statSync(file).mtimeMs;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/** Runs a load generator and parses the single JSON line it prints. */
async function runJson(binary: string, args: string[], seconds: number): Promise<Record<string, unknown>> {
  const name = path.basename(binary);
  const r = await run(binary, args, seconds * 1000 + KILL_SLACK_MS);
  const command = `${name} ${args.join(' ')}`;
  if (r.code !== 0) {
    const why = r.signal
      ? `was killed by ${r.signal} (hung past its ${seconds} s deadline?)`
      : `exited with ${r.code}`;
    throw new Error(`${command} ${why}: ${r.stderr.trim() || '(no stderr)'}`);
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new Error(`${command} printed ${JSON.stringify(line)}, not the one JSON line expected`);
  }
}

function numberField(out: Record<string, unknown>, key: string, tool: string): number {
  const v = out[key];
  if (typeof v !== 'number') throw new Error(`${tool} output lacks a numeric "${key}": ${JSON.stringify(out)}`);
  return v;
}

interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Spawns a command, collects its output, and kills it if it outlives timeoutMs. */
function run(command: string, args: string[], timeoutMs: number): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: timeoutMs, killSignal: 'SIGKILL' });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('error', (err: NodeJS.ErrnoException) => {
      const hint = err.code === 'ENOENT' && command === 'cc' ? ' (install a C compiler, e.g. apt-get install gcc)' : '';
      reject(new Error(`cannot run ${command}: ${err.message}${hint}`));
    });
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr }));
  });
}
