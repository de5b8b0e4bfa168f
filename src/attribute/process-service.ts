// The service a connection's process names itself: OTEL_SERVICE_NAME, else the service.name in
// OTEL_RESOURCE_ATTRIBUTES (the SDK's precedence), read from /proc/PID/environ. Only that one
// value is kept from the environment; everything else in it is skipped unread.
//
// The kernel's pids are in the host's numbering, so /proc must be the host PID namespace's
// (hostProcProblem). Reading another user's environ needs CAP_SYS_PTRACE (the kernel's
// PTRACE_MODE_READ check); a process that is gone, or denied, is simply "unknown", counted.
//
// Cache: one entry per pid, negative answers included, trusted for ttlMs (a pid can be reused,
// a process can exec), at most maxEntries (the oldest read is dropped first). When a re-read
// finds the process gone, its last answer stands: that process's connections are still ending.
import { readFileSync, readlinkSync, statSync } from 'node:fs';

/** Why /proc/PID/environ could not be read. */
export type ServiceLookupFailure =
  | 'gone' //   the process had exited (ENOENT, ESRCH)
  | 'denied' // EACCES/EPERM: another user's process without CAP_SYS_PTRACE, or an LSM refused
  | 'error'; // anything else

export const SERVICE_LOOKUP_FAILURES: readonly ServiceLookupFailure[] = ['gone', 'denied', 'error'];

export interface ProcessServiceOptions {
  /** pids remembered at most */
  maxEntries?: number;
  /** how long an answer is trusted */
  ttlMs?: number;
  /** where the host's procfs is mounted */
  procRoot?: string;
  /** milliseconds, monotonic enough for a TTL */
  now?: () => number;
  /** reads a file whole (tests replace it) */
  read?: (path: string) => Buffer;
  /** told once, at the first denied read: the fix */
  log?: (msg: string) => void;
  /** tcpspan's own pid (default process.pid): its connections stay under its own resource */
  ownPid?: number;
}

export interface ProcessServiceStats {
  /** lookup() calls */
  lookups: number;
  /** of those, reads of /proc/PID/environ (the rest were answered from the cache) */
  reads: number;
  failed: Record<ServiceLookupFailure, number>;
}

export interface ProcessServices {
  /** The service pid's environment names; undefined when none, or unknown. Never throws. */
  lookup(pid: number): string | undefined;
  stats(): ProcessServiceStats;
}

export const DEFAULT_MAX_ENTRIES = 4096;
export const DEFAULT_TTL_MS = 10_000;

export function createProcessServices(opts: ProcessServiceOptions = {}): ProcessServices {
  return new ProcessServiceCache(opts);
}

interface Entry {
  service: string | undefined;
  readAt: number;
}

class ProcessServiceCache implements ProcessServices {
  private readonly _maxEntries: number;
  private readonly _ttlMs: number;
  private readonly _procRoot: string;
  private readonly _now: () => number;
  private readonly _read: (path: string) => Buffer;
  private readonly _log: ((msg: string) => void) | undefined;
  private readonly _ownPid: number;
  /** by pid, oldest read first */
  private readonly _entries = new Map<number, Entry>();
  private _lookups = 0;
  private _reads = 0;
  private readonly _failed: Record<ServiceLookupFailure, number> = { gone: 0, denied: 0, error: 0 };

  constructor(opts: ProcessServiceOptions) {
    this._maxEntries = Math.max(1, opts.maxEntries ?? DEFAULT_MAX_ENTRIES);
    this._ttlMs = Math.max(0, opts.ttlMs ?? DEFAULT_TTL_MS);
    this._procRoot = opts.procRoot ?? '/proc';
    this._now = opts.now ?? Date.now;
    this._read = opts.read ?? ((p) => readFileSync(p));
    this._log = opts.log;
    this._ownPid = opts.ownPid ?? process.pid;
  }

  lookup(pid: number): string | undefined {
    this._lookups++;
    if (!(pid > 0) || pid === this._ownPid) return undefined;
    const now = this._now();
    const e = this._entries.get(pid);
    if (e !== undefined && now - e.readAt < this._ttlMs) return e.service;

    this._reads++;
    let service: string | undefined;
    try {
      service = serviceFromEnviron(this._read(`${this._procRoot}/${pid}/environ`));
    } catch (err) {
      const reason = failureReason(err);
      this._failed[reason]++;
      if (reason === 'denied' && this._failed.denied === 1) {
        this._log?.(`cannot read ${this._procRoot}/${pid}/environ (${(err as NodeJS.ErrnoException).code}): ` +
          'spans of other users\' processes keep tcpspan\'s service.name; grant CAP_SYS_PTRACE to read them');
      }
      // the process we read before is gone: its answer stands for its last connections
      if (e !== undefined && reason === 'gone') service = e.service;
    }
    this._entries.delete(pid);
    if (this._entries.size >= this._maxEntries) this._entries.delete(this._entries.keys().next().value!);
    this._entries.set(pid, { service, readAt: now });
    return service;
  }

  stats(): ProcessServiceStats {
    return { lookups: this._lookups, reads: this._reads, failed: { ...this._failed } };
  }
}

function failureReason(err: unknown): ServiceLookupFailure {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ENOENT' || code === 'ESRCH') return 'gone';
  if (code === 'EACCES' || code === 'EPERM') return 'denied';
  return 'error';
}

/** Keys and values longer than this are refused, as by the SDK's detector. */
const MAX_LENGTH = 255;
const SERVICE_NAME_KEY = Buffer.from('OTEL_SERVICE_NAME=');
const RESOURCE_ATTRIBUTES_KEY = Buffer.from('OTEL_RESOURCE_ATTRIBUTES=');
const O = 0x4f; // 'O': only entries starting with it are looked at

/**
 * The service an environment block (NUL-separated NAME=value entries, as /proc/PID/environ)
 * names: OTEL_SERVICE_NAME when set and not blank, else service.name in OTEL_RESOURCE_ATTRIBUTES.
 * As getenv(), the first entry of a name counts. A name over 255 characters names nothing
 * (the SDK's limit for OTEL_RESOURCE_ATTRIBUTES, applied to both: it bounds the cache).
 */
export function serviceFromEnviron(env: Buffer): string | undefined {
  let serviceName: string | undefined;
  let resourceAttributes: string | undefined;
  let seenName = false, seenAttributes = false;
  for (let start = 0; start < env.length;) {
    let end = env.indexOf(0, start);
    if (end < 0) end = env.length;
    if (env[start] === O) {
      if (!seenName && startsWith(env, start, end, SERVICE_NAME_KEY)) {
        seenName = true;
        serviceName = env.toString('utf8', start + SERVICE_NAME_KEY.length, end).trim();
        if (serviceName !== '') return serviceName.length <= MAX_LENGTH ? serviceName : undefined;
      } else if (!seenAttributes && startsWith(env, start, end, RESOURCE_ATTRIBUTES_KEY)) {
        seenAttributes = true;
        resourceAttributes = env.toString('utf8', start + RESOURCE_ATTRIBUTES_KEY.length, end);
      }
    }
    start = end + 1;
  }
  return resourceAttributes === undefined ? undefined : serviceNameOfResourceAttributes(resourceAttributes);
}

function startsWith(buf: Buffer, start: number, end: number, prefix: Buffer): boolean {
  if (end - start < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (buf[start + i] !== prefix[i]) return false;
  return true;
}

/**
 * service.name in an OTEL_RESOURCE_ATTRIBUTES value (`key=value,...`, percent-encoded), parsed
 * as the SDK's detector does: a malformed list is discarded whole (the specification's rule),
 * the last service.name wins, a blank one names nothing.
 */
export function serviceNameOfResourceAttributes(value: string): string | undefined {
  let service: string | undefined;
  for (const pair of value.split(',')) {
    if (pair.trim() === '') continue;
    const kv = pair.split('=');
    if (kv.length !== 2) return undefined;
    const key = kv[0]!.trim();
    if (key === '') return undefined;
    let k: string, v: string;
    try {
      k = decodeURIComponent(key);
      v = decodeURIComponent(kv[1]!.trim());
    } catch {
      return undefined;
    }
    if (k.length > MAX_LENGTH || v.length > MAX_LENGTH) return undefined;
    if (k === 'service.name') service = v;
  }
  return service === '' ? undefined : service;
}

/** The initial PID namespace's inode number (PROC_PID_INIT_INO, include/linux/proc_ns.h). */
const INIT_PID_NS_INO = 0xeffffffc;

/**
 * Why /proc/PID cannot name the kernel's pids here, or undefined when it can: the kernel
 * reports pids in the initial PID namespace, and a /proc of another namespace would name
 * other processes (or none) by the same numbers.
 */
export function hostProcProblem(procRoot = '/proc'): string | undefined {
  try {
    const ino = statSync(`${procRoot}/self/ns/pid`).ino;
    if (ino !== INIT_PID_NS_INO || readlinkSync(`${procRoot}/self`) !== String(process.pid)) {
      return 'tcpspan does not run in the host\'s PID namespace, where the kernel numbers processes';
    }
    return undefined;
  } catch (err) {
    return `cannot read ${procRoot}/self (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`;
  }
}
