// The service a connection's process names itself: OTEL_SERVICE_NAME, else the service.name in
// OTEL_RESOURCE_ATTRIBUTES (the SDK's precedence), read from /proc/PID/environ. Only that one
// value is kept from the environment; everything else in it is skipped unread.
//
// The kernel's pids are in the host's numbering, so /proc must be the host PID namespace's
// (hostProcProblem). Another user's environ (mode 0400, its owner's) takes CAP_DAC_READ_SEARCH
// to open and passing the kernel's ptrace read check (CAP_PERFMON passed it on 6.18; root and
// CAP_SYS_PTRACE always do); a process that is gone, or denied, is simply "unknown", counted.
//
// Cache: one entry per pid, negative answers included, trusted for ttlMs (a pid can be reused,
// a process can exec), at most maxEntries (the oldest read is dropped first). When a re-read
// finds the process gone, its last answer stands: that process's connections are still ending.
import { closeSync, openSync, readlinkSync, readSync, statSync } from 'node:fs';

/** Why /proc/PID/environ could not be read. */
export type ServiceLookupFailure =
  | 'gone' //   the process had exited (ENOENT, ESRCH)
  | 'denied' // EACCES/EPERM: another user's process without the capabilities, or an LSM refused
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
  /** reads a file whole; the bytes need stay valid only until the next call (tests replace it) */
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
    this._read = opts.read ?? createFileReader();
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
          'spans of other users\' processes keep tcpspan\'s service.name; grant CAP_DAC_READ_SEARCH, and CAP_SYS_PTRACE if that is not enough');
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

/**
 * Reads a file whole into one buffer reused from call to call (grown when a file fills it):
 * no fstat and no allocation per read, which readFileSync spends on procfs files (size 0).
 */
function createFileReader(): (path: string) => Buffer {
  let buf = Buffer.allocUnsafe(16 * 1024);
  return (path) => {
    const fd = openSync(path, 'r');
    try {
      let n = 0;
      for (;;) {
        if (n === buf.length) {
          const bigger = Buffer.allocUnsafe(buf.length * 2);
          buf.copy(bigger, 0, 0, n);
          buf = bigger;
        }
        const got = readSync(fd, buf, n, buf.length - n, null);
        if (got === 0) return buf.subarray(0, n);
        n += got;
      }
    } finally {
      closeSync(fd);
    }
  };
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

/**
 * The service an environment block (NUL-separated NAME=value entries, as /proc/PID/environ)
 * names: OTEL_SERVICE_NAME when set and not blank, else service.name in OTEL_RESOURCE_ATTRIBUTES.
 * As getenv(), the first entry of a name counts. A name over 255 characters names nothing
 * (the SDK's limit for OTEL_RESOURCE_ATTRIBUTES, applied to both: it bounds the cache).
 */
export function serviceFromEnviron(env: Buffer): string | undefined {
  const name = entryValue(env, SERVICE_NAME_KEY)?.trim();
  if (name !== undefined && name !== '') return name.length <= MAX_LENGTH ? name : undefined;
  const attributes = entryValue(env, RESOURCE_ATTRIBUTES_KEY);
  return attributes === undefined ? undefined : serviceNameOfResourceAttributes(attributes);
}

/** The value of the first entry that starts with `key` (NAME=), found by a search rather than a walk over every entry. */
function entryValue(env: Buffer, key: Buffer): string | undefined {
  let at = env.indexOf(key);
  while (at > 0 && env[at - 1] !== 0) at = env.indexOf(key, at + 1); // inside another entry (MY_OTEL_...)
  if (at < 0) return undefined;
  let end = env.indexOf(0, at + key.length);
  if (end < 0) end = env.length;
  return env.toString('utf8', at + key.length, end);
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
