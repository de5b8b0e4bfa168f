// The bridge: kernel ring -> decoder -> correlator -> attribution -> (metrics, sampler) -> span
// sinks, and its orderly shutdown. With correlator.checkpointMs, also: a timer -> the kernel's
// lives map -> decoder -> correlator -> checkpoint spans, along the same stages.
import type { Capture, Counters } from '../capture/probes.js';
import { createRingPoller, type RingPoller } from '../capture/ring-poller.js';
import { decodeEvent, decodeLife, EventFlag, isConnRecord, newKernelEvent, type RecordMemory } from '../decode/event.js';
import { createCorrelator, type Correlator, type CorrelatorOptions, type LifeReader } from '../correlate/correlator.js';
import type { CheckpointRecord } from '../correlate/checkpoint.js';
import type { ConnectionKind, ConnectionRecord } from '../correlate/connection-record.js';
import type { Attributor } from '../attribute/cgroup-attribution.js';
import { epochOffset, toCheckpointSpanData, toSpanData, type EpochOffset, type SpanData, type SpanOwner } from '../correlate/span-data.js';
import type { Clock } from '../decode/format.js';
import type { HealthSources } from '../export/bridge-metrics.js';
import type { SpanSpoolStats } from '../export/span-export-queue.js';
import type { ProcessServices } from '../attribute/process-service.js';
import { createSpanOwners, type SpanOwners } from '../attribute/span-owner.js';
import type { Sampler } from './sampler.js';
import type { Detector } from '../detect/detector.js';

/** Where finished connections go: console, OTLP, a file. */
export interface SpanSink {
  readonly name: string;
  /** Never throws; a refusal is counted by the sink. */
  accept(rec: ConnectionRecord, span: SpanData): void;
  /** A detection (tcp.port_scan, tcp.syn_flood: INTERNAL, no connection behind it); never throws. */
  acceptDetection?(span: SpanData): void;
  /** A checkpoint of an open end (correlator.checkpointMs); a sink without it shows finished ends only (console lines). */
  acceptCheckpoint?(cp: CheckpointRecord, span: SpanData): void;
  /** Delivers what it holds within the deadline; the rest is counted as dropped. */
  shutdown(deadlineMs: number): Promise<void>;
  /** True while it cannot take more without refusing it (its export queue is full). */
  saturated?(): boolean;
  exported(): number;
  dropped(): Record<string, number>;
  /** Its spool's counts, when it has one. */
  spool?(): SpanSpoolStats | undefined;
}

export interface BridgeOptions {
  capture: Capture;
  clock: Clock;
  correlator: CorrelatorOptions;
  sinks: SpanSink[];
  /**
   * The service each span's process names (attribution.serviceFromProcess), its owner's
   * service.name; absent: every span under tcpspan's service. Asked when a connection record with a pid arrives, so a
   * short-lived process is read while it lives, and again (from its cache) at emission.
   */
  services?: ProcessServices;
  /** Fills container.id and k8s.pod.uid (the span owner's, on its resource) before a record becomes a span; none: not attributed. */
  attributor?: Attributor;
  /** Called for each finished connection end (metrics), before sampling: every end is counted. */
  onRecord?: (rec: ConnectionRecord) => void;
  /** Called for each checkpoint of an open end (metrics), before sampling. */
  onCheckpoint?: (cp: CheckpointRecord) => void;
  /** Which ends become spans (sampling.ratio < 1); none: every end does. */
  sampler?: Sampler;
  /** Port scan and SYN flood detection (detect.enabled): fed every record, ticked on a timer. */
  detector?: Detector;
  /** How often the kernel's loss counters are read. */
  lossCheckMs?: number;
  /** How long after a loss the kernel is asked which ends it still holds (ends whose Close was lost). */
  lostCloseSweepMs?: number;
  busyIntervalMs?: number;
}

export interface BridgeSummary {
  kernelEvents: number;
  /** the kernel's counters at the end (Capture.readCounters) */
  kernelCounters: Counters;
  lostEvents: Record<string, number>;
  /** connection ends finished, sampled out or not */
  spans: number;
  /** checkpoints of open ends made (correlator.checkpointMs), sampled out or not; absent: none */
  checkpoints?: number;
  /** reads of the kernel's lives map for checkpoints that failed (those checkpoints were not made) */
  checkpointReadsFailed?: number;
  /** of those and the checkpoints, the spans sampling left out (none made; not a loss); present when a sampler ran */
  sampledOut?: number;
  exported: Record<string, number>;
  dropped: Record<string, number>;
  /** per sink with a spool: spans written to it, found in it at start, and left in it for the next run */
  spool?: Record<string, SpanSpoolStats>;
  correlatorDrops: Record<string, number>;
  /** reads of /proc/PID/environ that failed, by reason (non-zero ones); absent without attribution */
  serviceLookupsFailed?: Record<string, number>;
  /** cgroup lookups that found no path, by reason (their spans' resources go without container.id) */
  attributionMisses: Record<string, number>;
  /** open ends ended because the kernel no longer held them after a loss (their Close was lost) */
  closesLost: number;
}

export interface Bridge {
  readonly health: HealthSources;
  start(): void;
  /**
   * Stops intake, drains the ring, ends open connections as incomplete, then flushes the sinks
   * and runs `alongside` (e.g. the final metrics export, complete once open connections have
   * ended) at the same time, all within `deadlineMs` of the call. Idempotent.
   */
  stop(deadlineMs: number, alongside?: () => Promise<void>): Promise<BridgeSummary>;
  /** Visits every open end (metrics of open connections): its kind, family and start (CLOCK_MONOTONIC ns). */
  openEnds(visit: (kind: ConnectionKind, family: 'ipv4' | 'ipv6', startNs: number) => void): void;
}

export function createBridge(opts: BridgeOptions): Bridge {
  return new RingBridge(opts);
}

const nowMono = (): number => Number(process.hrtime.bigint());

/**
 * Records handled per drain at most (two per connection end): a few milliseconds of
 * work, after which the event loop runs exports and timers before the next batch.
 */
const DRAIN_BATCH = 4096;

/** How often the detectors run: scan windows close within this of their end; the kernel's SYN counts are read every detect.intervalMs. */
const DETECT_TICK_MS = 250;

class RingBridge implements Bridge {
  readonly health: HealthSources;
  private readonly _correlator: Correlator;
  private readonly _poller: RingPoller;
  private readonly _event = newKernelEvent();
  private _received = 0;
  private _spans = 0;
  private _checkpoints = 0;
  private _checkpointReadsFailed = 0;
  private _checkpointTimer: NodeJS.Timeout | undefined;
  private readonly _readLives: LifeReader | undefined;
  private _ringbufFull = 0;
  private _lastLossCheck = 0;
  private _stopping: Promise<BridgeSummary> | undefined;
  private _lingerTimer: NodeJS.Timeout | undefined;
  private _sweepTimer: NodeJS.Timeout | undefined;
  private _lossTimer: NodeJS.Timeout | undefined;
  private _detectTimer: NodeJS.Timeout | undefined;
  private readonly _handle: (m: RecordMemory, off: number) => void;
  private readonly _epoch: EpochOffset;
  private readonly _owners: SpanOwners = createSpanOwners();

  constructor(private readonly _opts: BridgeOptions) {
    this._epoch = epochOffset(_opts.clock.toEpochNs);
    const readLives = _opts.capture.readLives?.bind(_opts.capture);
    const checkpoints = (_opts.correlator.checkpointMs ?? 0) > 0 && readLives !== undefined;
    this._correlator = createCorrelator(_opts.correlator, (rec) => this._emit(rec),
      checkpoints ? (cp) => this._emitCheckpoint(cp) : undefined);
    if (readLives !== undefined) {
      const life = newKernelEvent();
      this._readLives = (cookies, visit) => {
        const read = readLives(cookies, (m, off) => { if (decodeLife(m, off, life)) visit(life); });
        if (read.error !== 0) this._checkpointReadsFailed++;
      };
    }
    const services = _opts.services;
    const detector = _opts.detector;
    this._handle = (m, off) => {
      const e = this._event;
      decodeEvent(m, off, e);
      this._received++;
      // refused and unanswered handshakes have no socket (cookie 0): the detector's, not the correlator's
      if (detector !== undefined && e.cookie === 0) detector.onEvent(e);
      this._correlator.onEvent(e);
      // the environment as early as possible: the process may be gone by the span's emission
      if (services !== undefined && isConnRecord(e.kind) && (e.flags & EventFlag.Pid) !== 0) services.lookup(e.pid);
    };
    this._poller = createRingPoller(_opts.capture.ring, () => this._drain(DRAIN_BATCH),
      { busyIntervalMs: _opts.busyIntervalMs ?? 2, batchRecords: DRAIN_BATCH });
    this.health = {
      kernelEventsReceived: () => this._received,
      kernelEventsLost: () => {
        const c = this._opts.capture.readCounters();
        return { ringbuf_full: c.ringbufFull, recursion_miss: c.recursionMisses };
      },
      connectionsOpen: () => this._correlator.stats().openConnections,
      connectionsSeen: () => {
        const s = this._correlator.stats();
        return s.emitted + s.openConnections + s.lingeringConnections;
      },
      correlatorDrops: () => nonZero(this._correlator.stats().dropped),
      spansExported: () => this._opts.sinks.reduce((n, s) => n + s.exported(), 0),
      spansDropped: () => this._dropped(),
      serviceLookupsFailed: () => nonZero(this._opts.services?.stats().failed ?? {}),
      spansSampledOut: () => this._opts.sampler?.sampledOut() ?? 0,
      closesLost: () => this._correlator.stats().closesLost,
      spool: () => this._spool(),
    };
  }

  start(): void {
    this._poller.start();
    // losses are seen when records are drained; a loss at the end of a burst is followed by none
    this._lossTimer = setInterval(() => this._checkLossIfDue(nowMono()), this._lossCheckMs);
    this._lossTimer.unref();
    const detector = this._opts.detector;
    if (detector !== undefined) {
      // on a timer, not per drain: windows close and the kernel's counts are read while the ring is idle too
      this._detectTimer = setInterval(() => this._emitDetections(detector.tick(nowMono())), DETECT_TICK_MS);
      this._detectTimer.unref();
    }
    const read = this._readLives;
    if (read !== undefined && (this._opts.correlator.checkpointMs ?? 0) > 0) {
      // checkpoints are due per end, from its start: look a few times per interval, at most each second
      const every = Math.min(1000, Math.max(10, Math.round(this._opts.correlator.checkpointMs! / 20)));
      // behind on exports: no checkpoint now (the queue would refuse it); the next one covers this interval too
      this._checkpointTimer = setInterval(() => { if (!this._sinksSaturated()) this._correlator.checkpoint(nowMono(), read); }, every);
      this._checkpointTimer.unref();
    }
  }

  openEnds(visit: (kind: ConnectionKind, family: 'ipv4' | 'ipv6', startNs: number) => void): void {
    this._correlator.openEnds(visit);
  }

  private _emitDetections(spans: SpanData[]): void {
    for (const span of spans) for (const sink of this._opts.sinks) sink.acceptDetection?.(span);
  }

  private _drain(max?: number): number {
    // Behind on exports: leave the records in the ring. Turning records into spans the queue
    // would refuse spends the CPU the exports need; a full ring drops in the kernel instead,
    // counted (ringbuf_full), and the spans that are made still go out at the export rate.
    if (max !== undefined && this._sinksSaturated()) {
      this._correlator.tick(nowMono());
      return 0;
    }
    const n = this._opts.capture.ring.drain(this._handle, max);
    const now = nowMono();
    this._correlator.tick(now);
    this._checkLossIfDue(now);
    this._armLingerTimer();
    return n;
  }

  /**
   * Closed connections wait lingerMs for trailing events and are emitted by tick(). When
   * the ring goes quiet nothing drains, so a timer ticks until none is left waiting.
   */
  private _armLingerTimer(): void {
    if (this._lingerTimer || this._stopping || this._correlator.stats().lingeringConnections === 0) return;
    this._lingerTimer = setTimeout(() => {
      this._lingerTimer = undefined;
      this._correlator.tick(nowMono());
      this._armLingerTimer();
    }, this._opts.correlator.lingerMs + 1);
  }

  private get _lossCheckMs(): number {
    return this._opts.lossCheckMs ?? 250;
  }

  private _checkLossIfDue(now: number): void {
    if (now - this._lastLossCheck > this._lossCheckMs * 1e6) this._checkLoss(now);
  }

  /** The kernel's loss counters moved: flag the connections whose events may be missing. */
  private _checkLoss(now: number): void {
    this._lastLossCheck = now;
    const c = this._opts.capture.readCounters();
    const full = c.ringbufFull + c.recursionMisses; // records never written, for either reason
    if (full > this._ringbufFull) {
      this._ringbufFull = full;
      this._correlator.markKernelLoss();
      this._scheduleLostCloseSweep();
    }
  }

  /**
   * A lost record may have been an end's Close: without it the end would stay open until
   * shutdown. Once the burst has passed, ask the kernel which ends it still holds.
   */
  private _scheduleLostCloseSweep(): void {
    if (this._sweepTimer !== undefined || this._stopping) return;
    this._sweepTimer = setTimeout(() => {
      this._sweepTimer = undefined;
      this._sweepLostCloses();
    }, this._opts.lostCloseSweepMs ?? 1000);
    this._sweepTimer.unref();
  }

  private _sweepLostCloses(): void {
    if (this._stopping) return;
    // behind on exports, or the kernel's map changing too fast to walk: later
    if (this._sinksSaturated()) return this._scheduleLostCloseSweep();
    const open = this._opts.capture.openLifeCookies();
    if (open === undefined) return this._scheduleLostCloseSweep();
    // the Closes written before the walk, so only ends that had none are ended
    this._opts.capture.ring.drain(this._handle);
    this._correlator.endLostCloses((cookie) => open.has(cookie), nowMono());
  }

  private _emit(rec: ConnectionRecord): void {
    this._spans++;
    this._opts.attributor?.attribute(rec);
    this._opts.onRecord?.(rec); // the metrics count every end, sampled out or not
    const sampler = this._opts.sampler;
    let traceState: string | undefined;
    if (sampler !== undefined) {
      const reason = sampler.decide(rec);
      if (reason === undefined) return; // sampled out (counted): no span is made
      traceState = sampler.traceState(reason);
    }
    const span = toSpanData(rec, this._epoch, traceState);
    const owner = this._ownerOf(rec);
    if (owner !== undefined) span.owner = owner;
    for (const sink of this._opts.sinks) sink.accept(rec, span);
  }

  private _emitCheckpoint(cp: CheckpointRecord): void {
    this._checkpoints++;
    this._opts.attributor?.attribute(cp);
    this._opts.onCheckpoint?.(cp); // the metrics count every checkpoint's bytes, sampled out or not
    const sampler = this._opts.sampler;
    let traceState: string | undefined;
    if (sampler !== undefined) {
      // the ratio's decision of the end's trace, or a rule the open end already shows
      const reason = sampler.decideOpen({ traceId: cp.traceId, retransmits: cp.totals.retransmits, handshakeNs: cp.handshakeNs });
      if (reason === undefined) return;
      traceState = sampler.traceState(reason);
    }
    const span = toCheckpointSpanData(cp, this._epoch, traceState);
    const owner = this._ownerOf(cp);
    if (owner !== undefined) span.owner = owner;
    for (const sink of this._opts.sinks) sink.acceptCheckpoint?.(cp, span);
  }

  /** Whose end it is: the resource its spans are exported under (undefined: none known, tcpspan's own). */
  private _ownerOf(r: Pick<ConnectionRecord, 'pid' | 'containerId' | 'podUid'>): SpanOwner | undefined {
    const services = this._opts.services;
    const service = services !== undefined && r.pid !== undefined ? services.lookup(r.pid) : undefined;
    return this._owners.of(service, r.containerId, r.podUid);
  }

  private _sinksSaturated(): boolean {
    for (const sink of this._opts.sinks) if (sink.saturated?.()) return true;
    return false;
  }

  /** The sinks' spools added up; undefined when none has one. */
  private _spool(): SpanSpoolStats | undefined {
    let sum: SpanSpoolStats | undefined;
    for (const sink of this._opts.sinks) {
      const s = sink.spool?.();
      if (s === undefined) continue;
      sum ??= { spooled: 0, replayed: 0, spans: 0, bytes: 0 };
      sum.spooled += s.spooled; sum.replayed += s.replayed; sum.spans += s.spans; sum.bytes += s.bytes;
    }
    return sum;
  }

  private _dropped(): Record<string, number> {
    const out: Record<string, number> = {};
    for (const sink of this._opts.sinks) {
      for (const [reason, n] of Object.entries(sink.dropped())) {
        if (n) out[`${sink.name}:${reason}`] = (out[`${sink.name}:${reason}`] ?? 0) + n;
      }
    }
    return out;
  }

  stop(deadlineMs: number, alongside?: () => Promise<void>): Promise<BridgeSummary> {
    return (this._stopping ??= this._stop(Date.now() + Math.max(0, deadlineMs), alongside));
  }

  private async _stop(deadlineAt: number, alongside: (() => Promise<void>) | undefined): Promise<BridgeSummary> {
    const { capture, sinks } = this._opts;
    capture.detach(); // no new records
    if (this._lingerTimer) clearTimeout(this._lingerTimer);
    if (this._sweepTimer) clearTimeout(this._sweepTimer);
    if (this._lossTimer) clearInterval(this._lossTimer);
    if (this._detectTimer) clearInterval(this._detectTimer);
    if (this._checkpointTimer) clearInterval(this._checkpointTimer);
    await this._poller.stop();
    while (this._drain() > 0); // what the kernel already wrote
    this._checkLoss(nowMono());
    // open connections end as incomplete, with the counters the kernel holds for them now
    if (this._readLives !== undefined) this._correlator.refreshOpen(this._readLives);
    this._correlator.flush(nowMono());
    // windows and episodes still open: their detections now, with what they have
    if (this._opts.detector !== undefined) this._emitDetections(this._opts.detector.flush(nowMono()));
    const left = Math.max(0, deadlineAt - Date.now());
    await Promise.all([...sinks.map((s) => s.shutdown(left)), withinDeadline(alongside, deadlineAt)]);
    const counters = capture.readCounters();
    const summary: BridgeSummary = {
      kernelEvents: this._received,
      kernelCounters: counters,
      lostEvents: nonZero({ ringbuf_full: counters.ringbufFull, recursion_miss: counters.recursionMisses, in_transit: Math.max(0, counters.submitted - this._received) }),
      spans: this._spans,
      ...(this._checkpoints > 0 && { checkpoints: this._checkpoints }),
      ...(this._checkpointReadsFailed > 0 && { checkpointReadsFailed: this._checkpointReadsFailed }),
      ...(this._opts.sampler && { sampledOut: this._opts.sampler.sampledOut() }),
      exported: Object.fromEntries(sinks.map((s) => [s.name, s.exported()])),
      dropped: this._dropped(),
      ...spoolSummary(sinks),
      correlatorDrops: nonZero(this._correlator.stats().dropped),
      closesLost: this._correlator.stats().closesLost,
      attributionMisses: this._opts.attributor?.misses() ?? {},
    };
    if (this._opts.services !== undefined) summary.serviceLookupsFailed = nonZero(this._opts.services.stats().failed);
    capture.close();
    return summary;
  }
}

function spoolSummary(sinks: SpanSink[]): { spool?: Record<string, SpanSpoolStats> } {
  const entries = sinks.flatMap((s) => {
    const st = s.spool?.();
    return st === undefined ? [] : [[s.name, st] as const];
  });
  return entries.length > 0 ? { spool: Object.fromEntries(entries) } : {};
}

function nonZero(r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).filter(([, n]) => n > 0));
}

/** Runs `fn`, resolving when it settles or at `deadlineAt`, whichever comes first; never rejects. */
async function withinDeadline(fn: (() => Promise<void>) | undefined, deadlineAt: number): Promise<void> {
  if (fn === undefined) return;
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadlineAt - Date.now())); });
  await Promise.race([Promise.resolve().then(fn).catch(() => undefined), late]);
  clearTimeout(timer);
}
