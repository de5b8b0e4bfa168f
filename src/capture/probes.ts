// Loads bpf/tcpspan.bpf.o through libbpf and attaches its programs:
// open -> check wire layout -> configure (filters, sizes) -> load -> attach -> map the ring.
// Every stage has its own error, naming the cause and the fix; every failure path
// detaches what was attached and closes the object.
import { existsSync, closeSync, openSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { captureLibbpfLog, libbpf, takeLibbpfLog, type Ptr } from './libbpf.js';
import { capturePrivileges, readCapabilities } from './capabilities.js';
import { ensureTracefs, TRACEFS } from './tracefs.js';
import { createProgramMisses, type ProgramMisses } from './program-misses.js';
import { structLayout, tracepointArgCount, withVmlinuxBtf, type StructLayout } from './btf.js';
import { openRingBuffer, type RingBuffer } from './ring-buffer.js';
import { encodeFilter, NO_INSPECT, type FilterSpec, type InspectSpec } from './filter.js';
import { DEFAULT_MAX_SOCKETS } from './lives-map.js';
import { createListenReader, type ListenReader } from './listen-stats.js';
import { createLivesReader, type LivesReader, type LivesRead } from './lives-reader.js';
import { ERRNO, errno, strerror, withSignalsBlocked } from './libc.js';
import { compareLayout, COUNTERS_LAYOUT, WIRE_STRUCTS } from '../decode/wire-layout.js';

export type CaptureStage = 'privileges' | 'open' | 'configure' | 'load' | 'attach' | 'ring';

export class CaptureError extends Error {
  constructor(readonly stage: CaptureStage, message: string, readonly detail: string[] = []) {
    super(message);
    this.name = 'CaptureError';
  }
}

export const DEFAULT_OBJECT_PATH = path.resolve(__dirname, '..', '..', '..', 'bpf', '.output', 'tcpspan.bpf.o');

export interface CaptureOptions {
  objectPath?: string;
  filter: FilterSpec;
  /** Ring buffer size in bytes: a power of two, at least one page. */
  ringBytes: number;
  /** Connection ends the kernel keeps a life for at once (preallocated); default DEFAULT_MAX_SOCKETS. */
  maxSockets?: number;
  /**
   * Record when a SYN reaches a listener (sock_ops on the cgroup v2 root). Without it,
   * a server end starts when its SYN-ACK was sent (ESTABLISHED minus the handshake RTT).
   */
  synTiming: boolean;
  cgroupPath?: string;
  /**
   * Payload inspection (inspect.traceparent, inspect.protocols): the cgroup_skb programs on
   * the cgroup v2 root. Both off (the default): those programs are not even loaded.
   */
  inspect?: InspectSpec;
  /**
   * SYN accounting (detect.enabled): the cgroup_skb ingress program that counts SYNs per
   * listening port, and the listen_ports map the SYN-ACK retransmit program also fills.
   */
  detect?: boolean;
  warn?: (message: string) => void;
}

export interface ProgramStatus {
  program: string;
  hook: string;
  /** false: left out before load (an opt-in feature that is off); such a program never runs */
  loaded: boolean;
  attached: boolean;
  note?: string;
}

export interface Counters {
  submitted: number;
  ringbufFull: number;
  sockMapFull: number;
  synMapFull: number;
  /** program runs the kernel skipped (recursion on a CPU): records never written */
  recursionMisses: number;
}

export interface Capture {
  readonly ring: RingBuffer;
  readonly programs: readonly ProgramStatus[];
  /** The kernel's counters; after close(), their last reading. */
  readCounters(): Counters;
  /** Connection lives the kernel holds now (one per tracked socket not yet destroyed); 0 once closed. */
  countLives(): number;
  /**
   * Cookies of the lives the kernel holds whose Close has not been written: the ends still
   * open. undefined when the walk could not finish (or the capture is closed): no answer.
   */
  openLifeCookies(): Set<number> | undefined;
  /** The kernel's SYN accounting (detect on and its program attached); undefined otherwise. */
  readonly listen?: ListenReader;
  /**
   * Hands the lives (struct sock_info, decode/event.ts decodeLife) of these socket cookies to
   * `visit`, read from the map now (lives-reader.ts): the checkpoints' current counters. Nothing once closed.
   */
  readLives?: LivesReader['read'];
  /** Detaches every program: no new records after this. Idempotent. */
  detach(): void;
  /** Detaches, unmaps the ring and frees the object. Idempotent. */
  close(): void;
}

interface ProgramSpec {
  name: string;
  hook: string;
  tracepoint?: string;
  /** The tracepoint's argument count this variant is written for. */
  args?: number;
  /**
   * A spare copy follows this program on the same tracepoint and takes what it missed: this
   * one's skipped runs are no loss, only the spare's are.
   */
  spared?: boolean;
  required?: boolean;
  cgroup?: boolean;
  /**
   * A classic (tracefs) tracepoint, attached through perf events: optional, since it needs
   * tracefs; what is lost without it, said once for all programs of the same `lost`.
   */
  classic?: { lost: string };
  /** a payload program: loaded only with an inspect option on */
  inspect?: boolean;
  /** SYN accounting: loaded only with detect on */
  detect?: boolean;
}

/** What is lost without the accept programs: said once when either cannot attach. */
const ACCEPT_LOST = 'server ends get process.pid and process.executable.name only when their process closes them ' +
  '(not when the peer resets them first)';

const PROGRAMS: readonly ProgramSpec[] = [
  { name: 'handle_set_state', hook: 'sock:inet_sock_set_state', tracepoint: 'inet_sock_set_state', required: true, spared: true },
  // after it: the changes it missed while busy on a CPU (the kernel skips a program's nested runs)
  { name: 'handle_set_state_spare', hook: 'sock:inet_sock_set_state (spare)', tracepoint: 'inet_sock_set_state', required: true },
  { name: 'handle_retransmit', hook: 'tcp:tcp_retransmit_skb', tracepoint: 'tcp_retransmit_skb', args: 3 },
  { name: 'handle_retransmit_noerr', hook: 'tcp:tcp_retransmit_skb', tracepoint: 'tcp_retransmit_skb', args: 2 },
  { name: 'handle_retransmit_synack', hook: 'tcp:tcp_retransmit_synack', tracepoint: 'tcp_retransmit_synack' },
  { name: 'handle_probe', hook: 'tcp:tcp_probe', tracepoint: 'tcp_probe' },
  { name: 'handle_receive_reset', hook: 'tcp:tcp_receive_reset', tracepoint: 'tcp_receive_reset' },
  { name: 'handle_send_reset', hook: 'tcp:tcp_send_reset', tracepoint: 'tcp_send_reset' },
  { name: 'handle_error_report', hook: 'sock:inet_sk_error_report', tracepoint: 'inet_sk_error_report' },
  // without it, the lives of destroyed sockets would fill the map
  { name: 'handle_destroy_sock', hook: 'tcp:tcp_destroy_sock', tracepoint: 'tcp_destroy_sock', required: true },
  { name: 'handle_sockops', hook: 'cgroup sock_ops (SYN arrival)', cgroup: true },
  // once per accepted connection: the process that accepted a server end
  { name: 'handle_accept4', hook: 'syscalls:sys_exit_accept4', classic: { lost: ACCEPT_LOST } },
  { name: 'handle_accept', hook: 'syscalls:sys_exit_accept', classic: { lost: ACCEPT_LOST } },
  { name: 'handle_egress', hook: 'cgroup_skb/egress (inspect: payload sent)', cgroup: true, inspect: true },
  { name: 'handle_ingress', hook: 'cgroup_skb/ingress (inspect: payload received)', cgroup: true, inspect: true },
  { name: 'handle_listen_ingress', hook: 'cgroup_skb/ingress (detect: SYNs per listening port)', cgroup: true, detect: true },
];

/** Why bpf() was refused although the capabilities were checked: a policy, not a capability. */
const POLICY_FIX = 'the process has CAP_BPF and CAP_PERFMON, so a security policy refused bpf(): ' +
  'a seccomp profile (in a container: seccompProfile RuntimeDefault allows it from Docker 20.10 / containerd 1.5), ' +
  'an LSM (SELinux, AppArmor) or kernel lockdown (cat /sys/kernel/security/lockdown); run `bin/tcpspan doctor`';

/** The inspect options as one phrase, for messages: what is off when the payload programs are. */
function inspectNames(inspect: InspectSpec): string {
  return [inspect.traceparent && 'inspect.traceparent', inspect.protocols && 'inspect.protocols'].filter(Boolean).join(' and ');
}

export function isPrivilegeErrno(err: number): boolean {
  return err === ERRNO.EPERM || err === ERRNO.EACCES;
}

export function openCapture(opts: CaptureOptions): Capture {
  // capabilities first: a missing one is one line naming it, not a libbpf log
  const asked = inspectNames(opts.inspect ?? NO_INSPECT);
  const privileges = capturePrivileges(readCapabilities(), { synTiming: opts.synTiming, detect: opts.detect === true, ...(asked && { needsNetAdmin: asked }) });
  if (privileges.fatal !== undefined) throw new CaptureError('privileges', privileges.fatal);
  for (const w of privileges.warnings) opts.warn?.(w);
  if (privileges.synTiming !== opts.synTiming || privileges.detect !== (opts.detect === true)) {
    opts = { ...opts, synTiming: privileges.synTiming, detect: privileges.detect };
  }
  captureLibbpfLog();
  const objectPath = opts.objectPath ?? DEFAULT_OBJECT_PATH;
  if (!existsSync(objectPath)) {
    throw new CaptureError('open', `cannot open BPF object ${objectPath}: it does not exist; run scripts/setup to build it`);
  }
  takeLibbpfLog();
  const obj = libbpf.openFile(objectPath);
  if (!obj) {
    const err = errno();
    throw new CaptureError('open', `cannot open BPF object ${objectPath}: ${strerror(err)}; rebuild it with scripts/setup`,
      takeLibbpfLog());
  }
  const links: Ptr[] = [];
  let ring: RingBuffer | undefined;
  try {
    checkWireLayout(obj, objectPath);
    const { planned: programs, left, progInfo } = configure(obj, opts);
    loadObject(obj);
    // root mounts tracefs where a fresh machine lacks it; otherwise the accept programs say what to do
    if (programs.some((p) => p.attach === 'classic') && ensureTracefs() === 'mounted_now') opts.warn?.(`tracefs was not mounted: mounted it at ${TRACEFS}`);
    const cgroupFd = programs.some((p) => p.attach === 'cgroup') ? openCgroup(opts) : undefined;
    const statuses = [...attachAll(programs, links, cgroupFd, opts), ...left];
    // a program with a spare behind it loses nothing by a skipped run: count the others' and the spare's
    const misses = createProgramMisses(progInfo, programs.filter((p) => !p.spec.spared).map((p) => libbpf.progFd(p.prog)).filter((fd) => fd >= 0));
    if (cgroupFd !== undefined) closeSync(cgroupFd);
    ring = mapRing(obj, opts.ringBytes);
    const listen = statuses.some((s) => s.program === 'handle_listen_ingress' && s.attached)
      ? createListenReader(mapFd(obj, 'listen_ports'), mapFd(obj, 'syn_sources'), mapFd(obj, 'detect_epoch')) : undefined;
    return new LoadedCapture(obj, links, ring, statuses, mapFd(obj, 'counters'), mapFd(obj, 'lives'), listen,
      opts.maxSockets ?? DEFAULT_MAX_SOCKETS, misses);
  } catch (err) {
    for (const link of links) libbpf.linkDestroy(link);
    ring?.close();
    libbpf.close(obj);
    throw err;
  }
}

function checkWireLayout(obj: Ptr, objectPath: string): void {
  const btf = libbpf.objectBtf(obj);
  if (!btf) throw new CaptureError('open', `${objectPath} has no BTF: rebuild it with scripts/setup (clang -g)`);
  const problems = Object.entries(WIRE_STRUCTS).flatMap(([name, spec]) => compareLayout(spec, structLayout(btf, name), name));
  if (problems.length) {
    throw new CaptureError('open', `the BPF object and the decoder disagree on the wire layout (${problems[0]}): ` +
      'rebuild with scripts/setup; if it persists, update src/decode/wire-layout.ts to match bpf/tcpspan.h', problems);
  }
}

interface PlannedProgram {
  spec: ProgramSpec;
  prog: Ptr;
  attach: 'tracepoint' | 'cgroup' | 'classic';
}

function configure(obj: Ptr, opts: CaptureOptions): { planned: PlannedProgram[]; left: ProgramStatus[]; progInfo: StructLayout | undefined } {
  const inspect = opts.inspect ?? NO_INSPECT;
  const inspecting = inspect.traceparent || inspect.protocols;
  const left: ProgramStatus[] = [];
  check(libbpf.mapSetMaxEntries(mustFindMap(obj, 'events'), opts.ringBytes), 'configure',
    `cannot size the ring buffer to ${opts.ringBytes} bytes (a power of two, at least one page)`);
  const maxSockets = opts.maxSockets ?? DEFAULT_MAX_SOCKETS;
  check(libbpf.mapSetMaxEntries(mustFindMap(obj, 'lives'), maxSockets), 'configure',
    `cannot size the map of connection lives to ${maxSockets} entries`);

  // the kernel's BTF, read once: the tracepoints' argument counts, and where bpf_prog_info keeps recursion_misses
  const { argCounts, progInfo } = withVmlinuxBtf((vmlinux) => {
    const counts = new Map<string, number | undefined>();
    for (const p of PROGRAMS) if (p.tracepoint) counts.set(p.tracepoint, tracepointArgCount(vmlinux, p.tracepoint));
    return { argCounts: counts, progInfo: structLayout(vmlinux, 'bpf_prog_info') };
  });
  const planned: PlannedProgram[] = [];
  for (const spec of PROGRAMS) {
    const prog = libbpf.findProgram(obj, spec.name);
    if (!prog) throw new CaptureError('configure', `program ${spec.name} is missing from the BPF object: rebuild with scripts/setup`);
    let enabled = true;
    if (spec.tracepoint) {
      const args = argCounts.get(spec.tracepoint);
      if (args === undefined) {
        if (spec.required) {
          throw new CaptureError('configure', `this kernel has no tracepoint ${spec.hook}: tcpspan needs Linux 4.16 or newer with BTF`);
        }
        opts.warn?.(`${spec.hook} does not exist on this kernel: ${spec.name} is off`);
        enabled = false;
      } else if (spec.args !== undefined && spec.args !== args) {
        enabled = false; // the other variant of this program matches the kernel
      }
    } else if (spec.inspect) {
      enabled = inspecting;
      // reported, so `doctor` and tests can see that no payload program was loaded
      if (!enabled) left.push({ program: spec.name, hook: spec.hook, loaded: false, attached: false, note: 'not loaded: inspect.traceparent and inspect.protocols are off' });
    } else if (spec.detect) {
      enabled = opts.detect === true;
      if (!enabled) left.push({ program: spec.name, hook: spec.hook, loaded: false, attached: false, note: 'not loaded: detect.enabled is off' });
    } else if (spec.cgroup && !opts.synTiming) {
      enabled = false;
    }
    libbpf.progSetAutoload(prog, enabled);
    if (enabled) planned.push({ spec, prog, attach: spec.cgroup ? 'cgroup' : spec.classic ? 'classic' : 'tracepoint' });
  }

  const rodata = mustFindMap(obj, '.rodata');
  const filter = encodeFilter(opts.filter, opts.synTiming, inspect, opts.detect === true);
  if (libbpf.mapValueSize(rodata) !== filter.length) {
    throw new CaptureError('configure', `the BPF object's read-only data is ${libbpf.mapValueSize(rodata)} bytes, ` +
      `the filter ${filter.length}: only the filter may live in .rodata; rebuild with scripts/setup`);
  }
  check(libbpf.mapSetInitialValue(rodata, filter), 'configure', 'cannot set the kernel-side filters');
  return { planned, left, progInfo };
}

function loadObject(obj: Ptr): void {
  takeLibbpfLog();
  // the verifier gives up with EAGAIN whenever a signal is pending (libbpf tries 5 times): a
  // profiler's SIGPROF every millisecond made every try fail; blocked, signals wait for the load
  const rc = withSignalsBlocked(() => libbpf.load(obj));
  if (rc === 0) return;
  const log = takeLibbpfLog();
  if (isPrivilegeErrno(-rc)) {
    throw new CaptureError('load', `cannot load BPF programs: ${strerror(-rc)}; ${POLICY_FIX}`);
  }
  const verifier = log.filter((l) => !l.startsWith('warning:')).slice(-12);
  throw new CaptureError('load', `cannot load BPF programs: ${strerror(-rc)} (see the libbpf log below); ` +
    'the kernel rejected them: report it with `bin/tcpspan doctor` output', verifier);
}

/** What goes without the cgroup programs, for the warning. */
function cgroupLoss(opts: CaptureOptions): string {
  const inspect = inspectNames(opts.inspect ?? NO_INSPECT);
  const losses = [opts.synTiming && 'server spans start when the SYN-ACK was sent (a few µs after the SYN)', inspect && `${inspect} are off`,
    opts.detect && 'SYN accounting and SYN flood detection are off'];
  return losses.filter(Boolean).join('; ');
}

function openCgroup(opts: CaptureOptions): number | undefined {
  const dir = opts.cgroupPath ?? findCgroup2Mount();
  if (!dir) {
    opts.warn?.(`no cgroup v2 hierarchy is mounted: ${cgroupLoss(opts)}; ` +
      'mount one with `mount -t cgroup2 none /sys/fs/cgroup` or set capture.cgroupPath');
    return undefined;
  }
  try {
    return openSync(dir, 'r');
  } catch (err) {
    opts.warn?.(`cannot open cgroup ${dir} (${(err as Error).message}): ${cgroupLoss(opts)}`);
    return undefined;
  }
}

export function findCgroup2Mount(): string | undefined {
  try {
    for (const line of readFileSync('/proc/self/mounts', 'utf8').split('\n')) {
      const [, mountPoint, type] = line.split(' ');
      if (type === 'cgroup2' && mountPoint) return mountPoint;
    }
  } catch {
    // no /proc: treated as no cgroup v2
  }
  return undefined;
}

function attachAll(planned: PlannedProgram[], links: Ptr[], cgroupFd: number | undefined, opts: CaptureOptions): ProgramStatus[] {
  const warn = opts.warn;
  const statuses: ProgramStatus[] = [];
  const classicFailed = new Map<string, string[]>(); // what is lost -> the hooks that failed, with why
  let inspectWarned = false;
  for (const { spec, prog, attach } of planned) {
    if (attach === 'cgroup' && cgroupFd === undefined) {
      statuses.push({ program: spec.name, hook: spec.hook, loaded: true, attached: false, note: 'no cgroup v2 hierarchy' });
      continue;
    }
    takeLibbpfLog();
    const link = attach === 'cgroup' ? libbpf.progAttachCgroup(prog, cgroupFd!) : libbpf.progAttach(prog);
    if (!link) {
      const err = errno();
      const privileged = isPrivilegeErrno(err);
      const why = privileged ? POLICY_FIX : 'see `bin/tcpspan doctor`';
      if (spec.required || attach === 'tracepoint') {
        throw new CaptureError('attach', `cannot attach ${spec.hook} (${spec.name}): ${strerror(err)}; ${why}`, privileged ? [] : takeLibbpfLog());
      }
      if (spec.classic) {
        // a classic tracepoint's id is read from tracefs, whose files only root may read by default
        const fix = err === ERRNO.ENOENT ? 'tracefs is not mounted: run `mount -t tracefs tracefs /sys/kernel/tracing`'
          : privileged && process.geteuid?.() !== 0 ? 'tracefs is readable by root only: run as root, or remount it for tcpspan\'s group (`mount -o remount,gid=GID /sys/kernel/tracing`)'
            : why;
        const failed = classicFailed.get(spec.classic.lost) ?? [];
        failed.push(`${spec.hook} (${strerror(err)}; ${fix})`);
        classicFailed.set(spec.classic.lost, failed);
      } else if (spec.detect) {
        warn?.(`cannot attach ${spec.hook}: ${strerror(err)}; SYN accounting and SYN flood detection are off (port scans are still detected)`);
      } else if (spec.inspect) {
        // one line for both payload programs: what is off, and why
        if (!inspectWarned) warn?.(`cannot attach the payload programs (cgroup_skb): ${strerror(err)}; ${inspectNames(opts.inspect ?? NO_INSPECT)} are off`);
        inspectWarned = true;
      } else {
        warn?.(`cannot attach ${spec.hook}: ${strerror(err)}; server spans start when the SYN-ACK was sent (a few µs after the SYN)`);
      }
      statuses.push({ program: spec.name, hook: spec.hook, loaded: true, attached: false, note: strerror(err) });
      continue;
    }
    links.push(link);
    statuses.push({ program: spec.name, hook: spec.hook, loaded: true, attached: true });
  }
  for (const [lost, hooks] of classicFailed) warn?.(`cannot attach ${hooks.join(', ')}: ${lost}`);
  return statuses;
}

function mapRing(obj: Ptr, ringBytes: number): RingBuffer {
  try {
    return openRingBuffer(mapFd(obj, 'events'), ringBytes);
  } catch (err) {
    throw new CaptureError('ring', `${(err as Error).message}; free memory or lower capture.ringBufferBytes`);
  }
}

function mustFindMap(obj: Ptr, name: string): Ptr {
  const map = libbpf.findMap(obj, name);
  if (!map) throw new CaptureError('configure', `map ${name} is missing from the BPF object: rebuild with scripts/setup`);
  return map;
}

function mapFd(obj: Ptr, name: string): number {
  return libbpf.mapFd(mustFindMap(obj, name));
}

function check(rc: number, stage: CaptureStage, what: string): void {
  if (rc < 0) throw new CaptureError(stage, `${what}: ${strerror(-rc)}`);
}

class LoadedCapture implements Capture {
  private _detached = false;
  private _closed = false;
  private readonly _key = Buffer.alloc(4);
  private readonly _values: Buffer;
  private readonly _cpus: number;
  private readonly _lives: LivesReader;

  constructor(private readonly _obj: Ptr, private readonly _links: Ptr[], readonly ring: RingBuffer,
              readonly programs: readonly ProgramStatus[], private readonly _countersFd: number,
              private readonly _livesFd: number, private readonly _listen: ListenReader | undefined,
              maxSockets: number, private readonly _misses: ProgramMisses) {
    this._cpus = libbpf.numPossibleCpus();
    this._values = Buffer.alloc(this._cpus * COUNTERS_LAYOUT.size);
    this._lives = createLivesReader(_livesFd, maxSockets);
  }

  readLives(cookies: ReadonlyMap<number, unknown>, visit: Parameters<LivesReader['read']>[1]): LivesRead {
    if (this._closed) return { visited: 0, lookups: 0, batchCalls: 0, error: 0 };
    return this._lives.read(cookies, visit);
  }

  private _final: Counters | undefined;

  get listen(): ListenReader | undefined {
    return this._closed ? undefined : this._listen;
  }

  readCounters(): Counters {
    if (this._final) return this._final;
    const sums = [0, 0, 0, 0];
    if (!this._closed && libbpf.mapLookupElem(this._countersFd, this._key, this._values) === 0) {
      for (let cpu = 0; cpu < this._cpus; cpu++) {
        for (let i = 0; i < sums.length; i++) {
          sums[i]! += Number(this._values.readBigUInt64LE(cpu * COUNTERS_LAYOUT.size + 8 * i));
        }
      }
    }
    return { submitted: sums[0]!, ringbufFull: sums[1]!, sockMapFull: sums[2]!, synMapFull: sums[3]!, recursionMisses: this._closed ? 0 : this._misses.read() };
  }

  countLives(): number {
    if (this._closed) return 0;
    const keys = [Buffer.alloc(8), Buffer.alloc(8)];
    let n = 0;
    for (let prev: Buffer | null = null; libbpf.mapGetNextKey(this._livesFd, prev, keys[n % 2]!) === 0; n++) prev = keys[n % 2]!;
    return n;
  }

  openLifeCookies(): Set<number> | undefined {
    return this._closed ? undefined : this._lives.openCookies();
  }

  detach(): void {
    if (this._detached) return;
    this._detached = true;
    for (const link of this._links.splice(0)) libbpf.linkDestroy(link);
  }

  close(): void {
    if (this._closed) return;
    this.detach();
    this._final = this.readCounters(); // the map is gone after: keep the last reading
    this._closed = true;
    this.ring.close();
    libbpf.close(this._obj);
  }
}
