// `tcpspan doctor`: checks that capture can run here, one line per check with the fix for each failure.
// Exit status 0 only when capture can run.
import { accessSync, constants, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { release } from 'node:os';
import { libbpf, BPF_MAP_TYPE_RINGBUF } from '../capture/libbpf.js';
import { CaptureError, DEFAULT_OBJECT_PATH, findCgroup2Mount, openCapture } from '../capture/probes.js';
import { NO_FILTER } from '../capture/filter.js';
import * as libc from '../capture/libc.js';
import { parseFlags } from '../config/flags.js';
import { usageText } from '../config/usage-text.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
}

const CAPS: Record<string, number> = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 };
const TRACEFS = '/sys/kernel/tracing';

function effectiveCaps(): bigint {
  const status = readFileSync('/proc/self/status', 'utf8');
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
  return m ? BigInt(`0x${m[1]}`) : 0n;
}

export function checkPrivileges(): CheckResult {
  const caps = effectiveCaps();
  const missing = Object.entries(CAPS).filter(([, bit]) => (caps & (1n << BigInt(bit))) === 0n).map(([name]) => name);
  const who = process.geteuid?.() === 0 ? 'root' : `uid ${process.geteuid?.()}`;
  if (missing.length === 0) return { check: 'privileges', status: 'ok', detail: `${who} with ${Object.keys(CAPS).join(', ')}` };
  const needed = missing.filter((c) => c === 'CAP_BPF' || c === 'CAP_PERFMON');
  return {
    check: 'privileges',
    status: needed.length ? 'fail' : 'warn',
    detail: `${who} lacks ${missing.join(', ')}: run as root (sudo bin/tcpspan ...) or grant ` +
      `${missing.join(', ')}${needed.length ? '' : ' (needed for SYN timing via cgroup sock_ops)'}`,
  };
}

function checkBtf(): CheckResult {
  try {
    accessSync('/sys/kernel/btf/vmlinux', constants.R_OK);
    return { check: 'kernel BTF', status: 'ok', detail: `/sys/kernel/btf/vmlinux (kernel ${release()})` };
  } catch {
    return {
      check: 'kernel BTF', status: 'fail',
      detail: `/sys/kernel/btf/vmlinux is missing or unreadable (kernel ${release()}): ` +
        'run a kernel built with CONFIG_DEBUG_INFO_BTF=y (most distributions since 2020 are)',
    };
  }
}

function checkLibbpf(): CheckResult {
  try {
    const cpus = libbpf.numPossibleCpus();
    return { check: 'libbpf', status: 'ok', detail: `libbpf.so.1 loaded (${cpus} possible CPUs)` };
  } catch (err) {
    return { check: 'libbpf', status: 'fail', detail: (err as Error).message };
  }
}

function checkObject(): CheckResult {
  return existsSync(DEFAULT_OBJECT_PATH)
    ? { check: 'BPF object', status: 'ok', detail: DEFAULT_OBJECT_PATH }
    : { check: 'BPF object', status: 'fail', detail: `${DEFAULT_OBJECT_PATH} is missing: run scripts/setup` };
}

/** tracefs is not needed for capture (BTF tracepoints attach without it), but tools and users expect it. */
export function checkTracefs(mountIfMissing: boolean): CheckResult {
  if (existsSync(`${TRACEFS}/events`)) return { check: 'tracefs', status: 'ok', detail: `mounted at ${TRACEFS}` };
  if (mountIfMissing) {
    try { mkdirSync(TRACEFS, { recursive: true }); } catch { /* mount reports the error */ }
    if (libc.mount('tracefs', TRACEFS, 'tracefs', 0, null) === 0) {
      return { check: 'tracefs', status: 'ok', detail: `was not mounted; mounted it at ${TRACEFS}` };
    }
    const err = libc.strerror(libc.errno());
    return {
      check: 'tracefs', status: 'warn',
      detail: `not mounted and mounting failed (${err}); tcpspan does not need it (BTF tracepoints), ` +
        `but to list tracepoints run \`mount -t tracefs tracefs ${TRACEFS}\` as root`,
    };
  }
  return { check: 'tracefs', status: 'warn', detail: `not mounted; run \`mount -t tracefs tracefs ${TRACEFS}\`` };
}

function checkRingbuf(): CheckResult {
  let rc: number;
  try {
    rc = libbpf.probeMapType(BPF_MAP_TYPE_RINGBUF);
  } catch (err) {
    return { check: 'ring buffer', status: 'fail', detail: (err as Error).message };
  }
  if (rc === 1) return { check: 'ring buffer', status: 'ok', detail: 'BPF_MAP_TYPE_RINGBUF supported' };
  if (rc === 0) return { check: 'ring buffer', status: 'fail', detail: 'BPF ring buffers are not supported: Linux 5.8 or newer is required' };
  return { check: 'ring buffer', status: 'fail', detail: `cannot probe BPF ring buffers: ${libc.strerror(-rc)}; run as root` };
}

function checkCgroup(): CheckResult {
  const mount = findCgroup2Mount();
  return mount
    ? { check: 'cgroup v2', status: 'ok', detail: `${mount} (SYN arrival via sock_ops)` }
    : {
        check: 'cgroup v2', status: 'warn',
        detail: 'no cgroup v2 hierarchy: server spans will start at SYN_RECV; mount one with `mount -t cgroup2 none /sys/fs/cgroup`',
      };
}

/** The definitive check: load the object and attach every program, then detach. */
function checkAttach(): CheckResult[] {
  try {
    const warnings: string[] = [];
    const capture = openCapture({ filter: NO_FILTER, ringBytes: 1 << 16, synTiming: true, warn: (m) => warnings.push(m) });
    // the payload programs are opt-in: with inspect.* off (as here) they are not loaded, which is no fault
    const results = capture.programs.map((p): CheckResult => ({
      check: p.hook, status: p.attached || !p.loaded ? 'ok' : 'warn',
      detail: p.attached ? `attached (${p.program})` : !p.loaded ? `${p.note ?? 'not loaded'} (${p.program})` : `not attached: ${p.note ?? ''}`,
    }));
    capture.close();
    return [...results, ...warnings.map((w): CheckResult => ({ check: 'capture', status: 'warn', detail: w }))];
  } catch (err) {
    const detail = err instanceof CaptureError ? `${err.stage}: ${err.message}` : (err as Error).message;
    return [{ check: 'load and attach', status: 'fail', detail }];
  }
}

export function runChecks(): CheckResult[] {
  const results = [checkPrivileges(), checkBtf(), checkLibbpf(), checkObject(), checkTracefs(true)];
  const basicsOk = results.every((r) => r.status !== 'fail' || r.check === 'privileges');
  results.push(basicsOk ? checkRingbuf() : { check: 'ring buffer', status: 'fail', detail: 'not checked: fix the failures above first' });
  results.push(checkCgroup());
  if (basicsOk) results.push(...checkAttach());
  return results;
}

export async function runDoctor(argv: string[]): Promise<number> {
  const { help, values } = parseFlags('doctor', argv);
  if (help) {
    process.stdout.write(`${usageText('doctor')}\n`);
    return 0;
  }
  const results = runChecks();
  for (const r of results) {
    process.stdout.write(values.json ? `${JSON.stringify(r)}\n` : `${r.status.toUpperCase().padEnd(5)} ${r.check}: ${r.detail}\n`);
  }
  const failed = results.filter((r) => r.status === 'fail').length;
  if (!values.json) {
    process.stdout.write(failed ? `${failed} check(s) failed: capture cannot run here\n` : 'capture can run here\n');
  }
  return failed ? 1 : 0;
}
