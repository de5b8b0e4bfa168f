// SYN flood detection: a pure state machine per listening port, fed every detect.intervalMs
// with the kernel's SYN accounting (cumulative counts per listener, capture/listen-stats.ts)
// and the namespaces' SYN cookie counters, and a clock.
//
// An interval is hot for a listener when its half-open connections reached
// detect.flood.halfOpen, or when the SYNs that found its SYN queue full (each answered with a
// SYN cookie, or dropped without syncookies) came at detect.flood.queueFullPerSecond or more.
// Hot for detect.flood.windowMs without a break: an episode, which began with the first hot
// interval. It ends after windowMs without a hot interval, at its last hot interval, and is
// reported then: one detection per episode, however long it lasted. At shutdown an episode
// still running is reported as ongoing.
import type { ListenStat, SynSource } from '../capture/listen-stats.js';

export interface SynFloodOptions {
  halfOpen: number;
  queueFullPerSecond: number;
  windowMs: number;
}

export interface SynFlood {
  netns: number;
  port: number;
  /** CLOCK_MONOTONIC ns: the first and the last hot interval's end */
  startNs: number;
  endNs: number;
  halfOpenPeak: number;
  backlog: number;
  syns: number;
  synsPerSecondPeak: number;
  /** SYNs that found the SYN queue full (SYN cookies, or drops without syncookies) */
  queueFull: number;
  /** SYNs that found the accept queue full (dropped) */
  acceptFull: number;
  synackRetransmits: number;
  /** the namespace's TcpExt SyncookiesSent over the episode (every listener of the namespace) */
  netnsCookiesSent: number;
  /** the busiest sources while the SYN queue was at least half full, busiest first (at most TOP_SOURCES) */
  topSources: { address: string; syns: number }[];
  /** still going at shutdown */
  ongoing: boolean;
}

export interface SynFloodInput {
  nowNs: number;
  ports: readonly ListenStat[];
  sources: readonly SynSource[];
  /** TcpExt SyncookiesSent by network namespace (cumulative), those known */
  cookiesSent: ReadonlyMap<number, number>;
}

export interface SynFloodDetector {
  /** One interval's reading; the episodes that ended. */
  update(input: SynFloodInput): SynFlood[];
  /** Shutdown: the episodes still running, as ongoing. */
  flush(): SynFlood[];
  /** episodes reported so far */
  detections(): number;
}

export const TOP_SOURCES = 5;
/** source addresses remembered per episode */
const MAX_SOURCES = 256;
/** listeners remembered at most (the kernel map holds 1024) */
const MAX_LISTENERS = 4096;

/** An episode under way: what its SynFlood will report, as counted so far. */
interface Episode extends Pick<SynFlood, 'startNs' | 'halfOpenPeak' | 'backlog' | 'syns' | 'synsPerSecondPeak' | 'queueFull' | 'acceptFull' | 'synackRetransmits'> {
  /** the last hot interval's end (the SynFlood's endNs) */
  lastHotNs: number;
  active: boolean;
  cookiesAtStart: number | undefined;
  sources: Map<string, number>;
}

interface Listener {
  prev: ListenStat;
  episode: Episode | undefined;
  lastNs: number;
}

const delta = (cur: number, prev: number): number => (cur >= prev ? cur - prev : cur); // an LRU-evicted entry restarts from 0

export function createSynFloodDetector(opts: SynFloodOptions): SynFloodDetector {
  const windowNs = opts.windowMs * 1e6;
  const listeners = new Map<string, Listener>();
  const prevSources = new Map<string, number>();
  let detections = 0;
  let lastNs: number | undefined;

  const report = (l: Listener, e: Episode, cookies: ReadonlyMap<number, number>, ongoing: boolean): SynFlood => {
    detections++;
    const now = cookies.get(l.prev.netns);
    const topSources = [...e.sources].sort((a, b) => b[1] - a[1]).slice(0, TOP_SOURCES).map(([address, syns]) => ({ address, syns }));
    return {
      netns: l.prev.netns, port: l.prev.port, startNs: e.startNs, endNs: e.lastHotNs, halfOpenPeak: e.halfOpenPeak, backlog: e.backlog,
      syns: e.syns, synsPerSecondPeak: Math.round(e.synsPerSecondPeak), queueFull: e.queueFull, acceptFull: e.acceptFull,
      synackRetransmits: e.synackRetransmits,
      netnsCookiesSent: now !== undefined && e.cookiesAtStart !== undefined ? Math.max(0, now - e.cookiesAtStart) : 0,
      topSources, ongoing,
    };
  };
  let lastCookies: ReadonlyMap<number, number> = new Map();
  // the cookie counters as of the previous interval: an episode's count starts before its first hot interval
  let lastCookiesBefore: ReadonlyMap<number, number> = new Map();

  return {
    update({ nowNs, ports, sources, cookiesSent }) {
      const intervalNs = lastNs === undefined ? 0 : nowNs - lastNs;
      const since = lastNs ?? nowNs;
      lastNs = nowNs;
      lastCookies = cookiesSent;
      // per-source SYNs of this interval, by listener
      const sourceDeltas = new Map<string, [string, number][]>();
      for (const s of sources) {
        const key = `${s.netns}/${s.port}/${s.address}`;
        const d = delta(s.syns, prevSources.get(key) ?? 0);
        prevSources.set(key, s.syns);
        if (d === 0) continue;
        const lk = `${s.netns}/${s.port}`;
        let list = sourceDeltas.get(lk);
        if (list === undefined) sourceDeltas.set(lk, (list = []));
        list.push([s.address, d]);
      }
      if (prevSources.size > 4 * 4096) prevSources.clear(); // the kernel's LRU holds 4096: forget what it forgot

      const ended: SynFlood[] = [];
      for (const p of ports) {
        const key = `${p.netns}/${p.port}`;
        let l = listeners.get(key);
        if (l === undefined) {
          if (listeners.size >= MAX_LISTENERS) continue;
          // first sight: its counts so far are history, not this interval's
          listeners.set(key, { prev: p, episode: undefined, lastNs: nowNs });
          continue;
        }
        const syns = delta(p.syns, l.prev.syns), queueFull = delta(p.queueFull, l.prev.queueFull);
        const acceptFull = delta(p.acceptFull, l.prev.acceptFull), synack = delta(p.synackRetransmits, l.prev.synackRetransmits);
        l.prev = p;
        l.lastNs = nowNs;
        // a half-open count read before this interval is not this interval's
        const halfOpen = p.seenNs >= since ? p.halfOpenPeak : 0;
        const seconds = intervalNs / 1e9;
        const hot = halfOpen >= opts.halfOpen || (seconds > 0 && queueFull / seconds >= opts.queueFullPerSecond);
        let e = l.episode;
        if (hot) {
          if (e === undefined) {
            e = l.episode = {
              startNs: nowNs - intervalNs, lastHotNs: nowNs, active: false, halfOpenPeak: 0, backlog: p.backlog, syns: 0, synsPerSecondPeak: 0,
              queueFull: 0, acceptFull: 0, synackRetransmits: 0, cookiesAtStart: lastCookiesBefore.get(p.netns), sources: new Map(),
            };
          }
          e.lastHotNs = nowNs;
          if (!e.active && nowNs - e.startNs >= windowNs) e.active = true;
        } else if (e !== undefined && (!e.active || nowNs - e.lastHotNs >= windowNs)) {
          // a candidate broken before windowMs is forgotten; an episode quiet for windowMs ends
          if (e.active) ended.push(report(l, e, cookiesSent, false));
          l.episode = e = undefined;
        }
        if (e === undefined) continue;
        // a namespace read for the first time during the episode counts from then
        e.cookiesAtStart ??= cookiesSent.get(p.netns);
        e.syns += syns;
        e.queueFull += queueFull;
        e.acceptFull += acceptFull;
        e.synackRetransmits += synack;
        if (halfOpen > e.halfOpenPeak) e.halfOpenPeak = halfOpen;
        if (p.backlog) e.backlog = p.backlog;
        if (seconds > 0 && syns / seconds > e.synsPerSecondPeak) e.synsPerSecondPeak = syns / seconds;
        for (const [address, n] of sourceDeltas.get(key) ?? []) {
          if (e.sources.has(address) || e.sources.size < MAX_SOURCES) e.sources.set(address, (e.sources.get(address) ?? 0) + n);
        }
      }
      // listeners the kernel forgot (LRU) and that are not in an episode
      for (const [key, l] of listeners) if (l.lastNs !== nowNs && l.episode === undefined) listeners.delete(key);
      lastCookiesBefore = cookiesSent;
      return ended;
    },
    flush() {
      const out: SynFlood[] = [];
      for (const l of listeners.values()) if (l.episode?.active) out.push(report(l, l.episode, lastCookies, true));
      listeners.clear();
      return out;
    },
    detections: () => detections,
  };
}
