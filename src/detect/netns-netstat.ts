// The kernel's SYN cookie and listen-queue counters of each network namespace (TcpExt
// SyncookiesSent, ListenOverflows, ListenDrops in /proc/PID/net/netstat): procfs shows the
// namespace of the process named, so each namespace is read through one of its processes.
//
// Which process: tcpspan's own for its namespace; for another, the first process found in
// it by a walk of /proc (readlink of /proc/PID/ns/net), remembered and checked again at
// each read. A walk runs only when a namespace has no known process, for each such
// namespace first after RESCAN_MIN_MS, then after twice as long each time it is not found,
// up to RESCAN_MAX_MS (a namespace no process is in, kept by a bind mount, costs a walk a
// minute; a namespace whose listeners receive SYNs is looked for again after 1 s at most);
// at most MAX_NAMESPACES namespaces are read. No setns(): it moves only the
// calling thread, and Node's other threads would see one namespace or the other by chance.
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface NetnsCounters {
  syncookiesSent: number;
  syncookiesRecv: number;
  syncookiesFailed: number;
  listenOverflows: number;
  listenDrops: number;
}

export interface NetnsNetstat {
  /**
   * The counters of these namespaces (inode numbers) and of tcpspan's own, those it could read.
   * `busy`: those whose listeners received SYNs just now, looked for again after RESCAN_MIN_MS
   * at most, whatever their backoff: a process there is likely, and its counters wanted now.
   */
  read(netns: Iterable<number>, nowMs: number, busy?: ReadonlySet<number>): Map<number, NetnsCounters>;
}

export const MAX_NAMESPACES = 64;
export const RESCAN_MIN_MS = 1000;
export const RESCAN_MAX_MS = 60_000;

/** The TcpExt counters of a /proc/net/netstat text. */
export function parseNetstat(text: string): NetnsCounters | undefined {
  const lines = text.split('\n').filter((l) => l.startsWith('TcpExt:'));
  if (lines.length < 2) return undefined;
  const names = lines[0]!.trim().split(/\s+/).slice(1), values = lines[1]!.trim().split(/\s+/).slice(1).map(Number);
  const get = (n: string): number => {
    const i = names.indexOf(n);
    return i < 0 ? 0 : values[i] ?? 0;
  };
  return {
    syncookiesSent: get('SyncookiesSent'), syncookiesRecv: get('SyncookiesRecv'), syncookiesFailed: get('SyncookiesFailed'),
    listenOverflows: get('ListenOverflows'), listenDrops: get('ListenDrops'),
  };
}

export function createNetnsNetstat(proc = '/proc'): NetnsNetstat {
  const netnsOf = (pid: string): number | undefined => {
    try {
      const m = /^net:\[(\d+)\]$/.exec(readlinkSync(`${proc}/${pid}/ns/net`));
      return m ? Number(m[1]) : undefined;
    } catch {
      return undefined;
    }
  };
  const pids = new Map<number, string>();
  const own = netnsOf('self');
  if (own !== undefined) pids.set(own, 'self');
  // namespaces without a known process: when to look again, and the wait after that
  const retry = new Map<number, { at: number; wait: number }>();

  const rescan = (wanted: Set<number>): void => {
    let entries: string[];
    try {
      entries = readdirSync(proc);
    } catch {
      return;
    }
    for (const pid of entries) {
      if (wanted.size === 0) break;
      if (!/^\d+$/.test(pid)) continue;
      const ns = netnsOf(pid);
      if (ns !== undefined && wanted.has(ns)) {
        pids.set(ns, pid);
        wanted.delete(ns);
      }
    }
  };

  return {
    read(netns, nowMs, busy) {
      const known: number[] = own !== undefined ? [own] : [];
      const missing = new Set<number>();
      for (const ns of netns) {
        if (known.length + missing.size >= MAX_NAMESPACES) break;
        if (ns === own) continue;
        const pid = pids.get(ns);
        // the process may have gone, or moved: the pid must still be in the namespace
        if (pid !== undefined && netnsOf(pid) === ns) {
          known.push(ns);
        } else {
          pids.delete(ns);
          missing.add(ns);
        }
      }
      const due = [...missing].filter((ns) => {
        const r = retry.get(ns);
        return r === undefined || r.at <= nowMs || (busy?.has(ns) === true && r.at - r.wait + RESCAN_MIN_MS <= nowMs);
      });
      if (due.length > 0) {
        rescan(new Set(due));
        for (const ns of due) {
          if (pids.has(ns)) {
            known.push(ns);
            retry.delete(ns);
          } else {
            const wait = Math.min(RESCAN_MAX_MS, (retry.get(ns)?.wait ?? RESCAN_MIN_MS / 2) * 2);
            retry.set(ns, { at: nowMs + wait, wait });
          }
        }
      }
      if (retry.size > 4 * MAX_NAMESPACES) retry.clear();
      const out = new Map<number, NetnsCounters>();
      for (const ns of known) {
        try {
          const c = parseNetstat(readFileSync(`${proc}/${pids.get(ns)}/net/netstat`, 'utf8'));
          if (c !== undefined) out.set(ns, c);
        } catch {
          // the process left between the check and the read: found again at the next walk
        }
      }
      return out;
    },
  };
}
