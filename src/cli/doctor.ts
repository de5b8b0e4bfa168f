// `tcpspan doctor`: checks that capture can run here, one line per check with the fix for each failure.
// Exit status 0 only when capture can run.
import { accessSync, constants, existsSync } from 'node:fs';
import { release } from 'node:os';
import { libbpf, BPF_MAP_TYPE_RINGBUF } from '../capture/libbpf.js';
import { CaptureError, DEFAULT_OBJECT_PATH, findCgroup2Mount, openCapture } from '../capture/probes.js';
import { NO_FILTER } from '../capture/filter.js';
import * as libc from '../capture/libc.js';
import { missingRequired, readCapabilities, withoutNetAdmin, type Capabilities } from '../capture/capabilities.js';
import { ensureTracefs, TRACEFS } from '../capture/tracefs.js';
import { parseFlags } from '../config/flags.js';
import { usageText } from '../config/usage-text.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  check: string;
  status: CheckStatus;
  detail: string;
}


/** Capabilities, told apart from kernel features: what each missing one disables. */
export function checkPrivileges(caps: Capabilities = readCapabilities()): CheckResult {
  const required = missingRequired(caps);
  const netAdmin = caps.has('CAP_NET_ADMIN');
  if (required.length > 0) {
    return {
      check: 'privileges', status: 'fail',
      detail: `${caps.who} lacks ${required.join(' and ')}, without which tcpspan cannot load its BPF programs: ` +
        `run as root (sudo bin/tcpspan ...) or grant CAP_BPF, CAP_PERFMON${netAdmin ? '' : ' and CAP_NET_ADMIN'}`,
    };
  }
  const has = caps.has('CAP_SYS_ADMIN') && !(caps.has('CAP_BPF') && caps.has('CAP_PERFMON')) ? 'CAP_SYS_ADMIN (in place of CAP_BPF and CAP_PERFMON)' : 'CAP_BPF, CAP_PERFMON';
  if (!netAdmin) {
    return {
      check: 'privileges', status: 'warn',
      // what `run` says with its defaults (SYN timing and SYN accounting on)
      detail: `${caps.who} with ${has} but not CAP_NET_ADMIN: capture runs; ${withoutNetAdmin({ synTiming: true, detect: true }).join('; ')}; ` +
        'grant CAP_NET_ADMIN for the cgroup programs',
    };
  }
  return { check: 'privileges', status: 'ok', detail: `${caps.who} with ${has}, CAP_NET_ADMIN` };
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

/** tracefs: only the accept programs (classic syscall tracepoints) need it; BTF tracepoints attach without it. */
export function checkTracefs(mountIfMissing: boolean): CheckResult {
  if (existsSync(`${TRACEFS}/events`)) return { check: 'tracefs', status: 'ok', detail: `mounted at ${TRACEFS}` };
  if (mountIfMissing) {
    const r = ensureTracefs();
    if (r === 'mounted' || r === 'mounted_now') return { check: 'tracefs', status: 'ok', detail: `was not mounted; mounted it at ${TRACEFS}` };
    return {
      check: 'tracefs', status: 'warn',
      detail: `not mounted and mounting failed (${r}); without it server ends name their process only when it closes them ` +
        `(the accept programs need it; the rest attach to BTF tracepoints): run \`mount -t tracefs tracefs ${TRACEFS}\` as root`,
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
  if (rc === 0) return { check: 'ring buffer', status: 'fail', detail: `BPF ring buffers are not supported by kernel ${release()}: Linux 5.8 or newer is required` };
  return { check: 'ring buffer', status: 'fail', detail: `cannot probe BPF ring buffers: ${libc.strerror(-rc)}; see the privileges check` };
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
    // detect on, as by default: the SYN accounting program must attach too
    const capture = openCapture({ filter: NO_FILTER, ringBytes: 1 << 16, synTiming: true, detect: true, warn: (m) => warnings.push(m) });
    // the payload programs are opt-in: with inspect.* off (as here) they are not loaded, which is no fault
    const results = capture.programs.map((p): CheckResult => ({
      check: p.hook, status: p.attached || !p.loaded ? 'ok' : 'warn',
      detail: p.attached ? `attached (${p.program})` : !p.loaded ? `${p.note ?? 'not loaded'} (${p.program})` : `not attached: ${p.note ?? ''}`,
    }));
    capture.close();
    // the privileges check has said what a missing CAP_NET_ADMIN disables
    const news = warnings.filter((w) => !w.startsWith('CAP_NET_ADMIN is missing'));
    return [...results, ...news.map((w): CheckResult => ({ check: 'capture', status: 'warn', detail: w }))];
  } catch (err) {
    const detail = err instanceof CaptureError ? `${err.stage}: ${err.message}` : (err as Error).message;
    return [{ check: 'load and attach', status: 'fail', detail }];
  }
}

export function runChecks(): CheckResult[] {
  const privileges = checkPrivileges();
  const results = [privileges, checkBtf(), checkLibbpf(), checkObject(), checkTracefs(true)];
  const basicsOk = results.every((r) => r.status !== 'fail');
  // without CAP_BPF the kernel refuses every probe: that says nothing about its features
  const notChecked = privileges.status === 'fail' ? 'not checked: the kernel refuses BPF probes without the capabilities above'
    : 'not checked: fix the failures above first';
  results.push(basicsOk ? checkRingbuf() : { check: 'ring buffer', status: 'fail', detail: notChecked });
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
