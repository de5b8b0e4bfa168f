// The detection stage, beside the correlator: kernel records that show a refused or
// unanswered handshake feed the port-scan detector; every detect.intervalMs the kernel's
// SYN accounting (capture/listen-stats.ts) and the namespaces' netstat counters feed the
// SYN metrics and the flood detector. Detections become INTERNAL spans for the sinks.
import { AF_INET, EventKind, type KernelEvent } from '../decode/event.js';
import { remoteAddress } from '../decode/format.js';
import type { ListenReader, ListenStat } from '../capture/listen-stats.js';
import type { EpochOffset, SpanData } from '../correlate/span-data.js';
import { createPortScanDetector, type PortScanDetector } from './port-scan.js';
import { createSynFloodDetector, type SynFloodDetector } from './syn-flood.js';
import { createNetnsNetstat, type NetnsCounters, type NetnsNetstat } from './netns-netstat.js';
import { createPortSlots, OTHER, type PortSlots } from './port-slots.js';
import { portScanSpan, synFloodSpan } from './detection-span.js';

export interface DetectOptions {
  intervalMs: number;
  /** listening ports with a metric series of their own; the rest are `other` */
  topPorts: number;
  scan: { ports: number; windowMs: number; maxPeers: number };
  flood: { halfOpen: number; queueFullPerSecond: number; windowMs: number };
}

/** What the metrics read (export/detect-metrics.ts): cumulative counts. */
export interface DetectSources {
  /** by port label (a port, or `other`) */
  synsReceived(): Map<number | string, number>;
  synQueueFull(): Map<number | string, number>;
  synackRetransmits(): Map<number | string, number>;
  /** half-open connections now, by port label */
  halfOpen(): Map<number | string, number>;
  synsRefused(): number;
  /** the kernel's counters, by network namespace read */
  netns(): Map<number, NetnsCounters>;
  detections(): { syn_flood: number; port_scan: number };
  scanPeersEvicted(): number;
}

export interface Detector {
  readonly sources: DetectSources;
  /** A kernel record (the bridge hands each one over before the correlator). Never throws. */
  onEvent(e: KernelEvent): void;
  /** Runs what is due at nowNs (CLOCK_MONOTONIC); the detections made, as spans. */
  tick(nowNs: number): SpanData[];
  /** Shutdown: closes every window and episode; their detections. */
  flush(nowNs: number): SpanData[];
}

const SYN = 0x02, ACK = 0x10;
/** A request lives at most 63 s with the default 5 SYN-ACK retries: a reading older than this is stale. */
const HALF_OPEN_STALE_NS = 64e9;
const SLOT_IDLE_MS = 10 * 60_000;

export function createDetector(opts: DetectOptions, listen: ListenReader | undefined, epoch: EpochOffset,
                               netstat: NetnsNetstat = createNetnsNetstat()): Detector {
  const scan: PortScanDetector = createPortScanDetector(opts.scan);
  const flood: SynFloodDetector = createSynFloodDetector(opts.flood);
  const slots: PortSlots = createPortSlots(opts.topPorts, SLOT_IDLE_MS);
  const intervalNs = opts.intervalMs * 1e6;
  const received = new Map<number | string, number>(), queueFull = new Map<number | string, number>();
  const synack = new Map<number | string, number>();
  let halfOpen = new Map<number | string, number>();
  let refused = 0;
  let netns = new Map<number, NetnsCounters>();
  const prev = new Map<string, ListenStat>();
  let lastRead: number | undefined;

  // every port label seen gets each series, zeros included: a counter that has not moved yet
  // still has a data point (a dashboard shows 0, not "no data")
  const add = (m: Map<number | string, number>, k: number | string, n: number): void => {
    m.set(k, (m.get(k) ?? 0) + n);
  };

  const readListen = (nowNs: number): SpanData[] => {
    if (listen === undefined) return [];
    const { ports, sources } = listen.read();
    // SYN metrics: this interval's counts per (namespace, port), summed per port label
    const deltas = ports.map((p) => {
      const key = `${p.netns}/${p.port}`;
      const before = prev.get(key);
      prev.set(key, p);
      const d = (cur: number, old: number | undefined): number => (old === undefined || cur < old ? cur : cur - old);
      return { p, syns: d(p.syns, before?.syns), queueFull: d(p.queueFull, before?.queueFull), synack: d(p.synackRetransmits, before?.synackRetransmits) };
    });
    if (prev.size > 4 * 1024) prev.clear(); // the kernel's LRU holds 1024: forget what it forgot
    const bySyns = new Map<number, number>();
    for (const x of deltas) bySyns.set(x.p.port, (bySyns.get(x.p.port) ?? 0) + x.syns);
    const labels = slots.assign([...bySyns].map(([port, syns]) => ({ port, syns })), nowNs / 1e6);
    const open = new Map<number | string, number>();
    for (const x of deltas) {
      const label = labels.get(x.p.port) ?? OTHER;
      add(received, label, x.syns);
      add(queueFull, label, x.queueFull);
      add(synack, label, x.synack);
      open.set(label, (open.get(label) ?? 0) + (nowNs - x.p.seenNs < HALF_OPEN_STALE_NS ? x.p.halfOpen : 0));
    }
    halfOpen = open;
    // the namespaces with listeners that saw SYNs, and tcpspan's own
    netns = netstat.read(new Set(ports.map((p) => p.netns)), nowNs / 1e6, new Set(deltas.filter((x) => x.syns > 0).map((x) => x.p.netns)));
    const cookies = new Map([...netns].map(([ns, c]) => [ns, c.syncookiesSent]));
    return flood.update({ nowNs, ports, sources, cookiesSent: cookies }).map((f) => synFloodSpan(f, epoch));
  };

  return {
    sources: {
      synsReceived: () => received,
      synQueueFull: () => queueFull,
      synackRetransmits: () => synack,
      halfOpen: () => halfOpen,
      synsRefused: () => refused,
      netns: () => netns,
      detections: () => ({ syn_flood: flood.detections(), port_scan: scan.stats().detections }),
      scanPeersEvicted: () => scan.stats().evicted,
    },
    onEvent(e) {
      try {
        if (e.cookie !== 0) return;
        const family = e.family === AF_INET ? 'ipv4' : 'ipv6';
        if (e.kind === EventKind.ResetSent) {
          // an RST from no socket answering a SYN: a closed port refused a connection
          if ((e.tcpFlags & (SYN | ACK)) !== SYN) return;
          refused++;
          scan.observe(e.netns, family, remoteAddress(e), e.lport, 'refused', e.tsNs);
        } else if (e.kind === EventKind.SynAckRetransmit || e.kind === EventKind.HalfOpenReset) {
          scan.observe(e.netns, family, remoteAddress(e), e.lport, 'unanswered', e.tsNs);
        }
      } catch {
        // detection must never stop spans
      }
    },
    tick(nowNs) {
      const spans = scan.tick(nowNs).map((s) => portScanSpan(s, epoch));
      if (lastRead === undefined || nowNs - lastRead >= intervalNs) {
        lastRead = nowNs;
        try {
          spans.push(...readListen(nowNs));
        } catch {
          // a failed read is retried at the next interval
        }
      }
      return spans;
    },
    flush(nowNs) {
      const spans = this.tick(nowNs);
      spans.push(...scan.flush().map((s) => portScanSpan(s, epoch)), ...flood.flush().map((f) => synFloodSpan(f, epoch)));
      return spans;
    },
  };
}
