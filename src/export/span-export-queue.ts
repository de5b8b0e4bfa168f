// A bounded queue in front of one SpanExporter: batches, one export in flight,
// retries with backoff, and a count with a reason for every span it gives up.
//
// Why not the SDK's BatchSpanProcessor: it takes Span objects from a tracer (we
// have finished ReadableSpans), and it loses a batch the exporter fails, while the
// OTLP gRPC exporter (0.301) does not retry UNAVAILABLE itself: without retries
// here, a collector restart would lose up to a batch per export attempt.
//
// Memory bound: at most maxQueueSize spans (and maxQueueBytes of them, given their size) are
// held, queued and in the batch being exported or waiting for a retry together.
//
// With a spool (span-spool.ts), a failed export call turns the queue durable: the failed batch
// and everything queued go to the spool, and while calls fail or the spool holds spans, new spans
// follow them there (written every scheduledDelayMs, or at once per full batch), so the order
// stays first in, first out. Batches are then read back from the spool and removed from it once
// the collector accepts them. Retries never give up then (only the spool's byte bound drops
// spans, the oldest first); at the shutdown deadline what is left goes to the spool rather than
// being dropped. While exports succeed and the spool is empty, nothing touches the disk.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import type { SpanSpool, SpoolBatch } from './span-spool.js';

/** What the queue drives: the SDK's SpanExporter shape, over any span type. */
export interface BatchExporter<T> {
  export(items: T[], resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

/**
 * Why a span was not exported:
 * - `queue_full`        refused by add(): maxQueueSize spans (or maxQueueBytes) were held, or the queue was shut down
 * - `export_failed`     its batch failed with an error a retry cannot fix, or (without a spool, maxRetries >= 0)
 *                       maxRetries + 1 times
 * - `shutdown_deadline` still held, not sent, when shutdown's deadline passed (and no spool took it)
 * - `shutdown_unconfirmed` sent, but its export call had not answered when shutdown's deadline
 *                       passed: the collector may or may not have it (counted apart, never as delivered)
 * - `spool_full`        in the spool's oldest segment when room was needed for newer spans
 * - `spool_corrupt`     a damaged spool record (or stretch of records) that could not be read back
 */
export type SpanDropReason = 'queue_full' | 'export_failed' | 'shutdown_deadline' | 'shutdown_unconfirmed' | 'spool_full' | 'spool_corrupt';

export const SPAN_DROP_REASONS: readonly SpanDropReason[] =
  ['queue_full', 'export_failed', 'shutdown_deadline', 'shutdown_unconfirmed', 'spool_full', 'spool_corrupt'];

const noDrops = (): Record<SpanDropReason, number> =>
  ({ queue_full: 0, export_failed: 0, shutdown_deadline: 0, shutdown_unconfirmed: 0, spool_full: 0, spool_corrupt: 0 });

export interface SpanExportQueueOptions<T = unknown> {
  /** Spans held at most (queued plus the batch being exported); add() refuses beyond. */
  maxQueueSize: number;
  /** Spans per export call at most. */
  maxExportBatchSize: number;
  /** Wait before exporting a partial batch; a full batch goes at once. */
  scheduledDelayMs: number;
  /** An export call whose callback has not come by then counts as failed (and is retried). */
  exportTimeoutMs: number;
  /**
   * Retries of a failed batch before its spans are dropped as export_failed; -1: no limit (the
   * batch is retried until it goes, while new spans queue up to maxQueueSize). Not used with a
   * spool: retries never give up then.
   */
  maxRetries: number;
  /** Delay before the first retry; doubled for each further failed call in a row (±20 % jitter). */
  retryInitialDelayMs: number;
  /** The longest delay between two retries (default 30 s, the Collector's retry_on_failure max_interval). */
  retryMaxDelayMs?: number;
  /** With sizeOf: bytes of spans held at most; add() refuses beyond (one span may go over). */
  maxQueueBytes?: number;
  /** A queued item's size in bytes, for maxQueueBytes. */
  sizeOf?(item: T): number;
  /** Where spans go while exports fail, and at the shutdown deadline; read back first. */
  spool?: SpanSpool<T>;
  onExported?(n: number): void;
  onDropped?(n: number, reason: SpanDropReason): void;
  /** Where failures and drops are reported, once per burst, never per span. */
  log?(msg: string): void;
}

export interface SpanExportQueueStats {
  /** Spans waiting for an export call (not counting the batch in flight). */
  queued: number;
  /** Spans the exporter accepted. */
  exported: number;
  dropped: Record<SpanDropReason, number>;
  /** exporter.export() calls, retries included. */
  exportCalls: number;
  /** Calls that failed or timed out. */
  failedCalls: number;
  /** Calls that re-sent a failed batch. */
  retries: number;
  /** Spans in the batch being exported or waiting for a retry. */
  inFlight: number;
  /** Bytes of the spans held (queued and in flight), when the queue knows their size. */
  heldBytes: number;
  /** With a spool: spans written to it (a span written twice counts twice), found in it at start, in it now, and its bytes. */
  spool?: SpanSpoolStats;
}

export interface SpanSpoolStats {
  spooled: number;
  replayed: number;
  spans: number;
  bytes: number;
}

export interface SpanExportQueue<T> {
  /** Queues a finished span; false (counted as queue_full) when full or shut down. Never throws. */
  add(span: T): boolean;
  /** add(), building the item only once it is accepted (a refused span costs nothing more). */
  offer(make: () => T): boolean;
  /**
   * Exports everything added before the call, without waiting for scheduledDelayMs.
   * Resolves when that is done (exported or dropped) or after `deadlineMs` milliseconds,
   * whichever is first; spans still held then stay queued. Never rejects.
   */
  forceFlush(deadlineMs: number): Promise<void>;
  /**
   * Stops intake, exports what it can within `deadlineMs` milliseconds, counts the rest
   * as shutdown_deadline, then shuts the exporter down (waiting for it at most until the
   * deadline). Idempotent: later calls return the first call's promise.
   */
  shutdown(deadlineMs: number): Promise<void>;
  stats(): SpanExportQueueStats;
  /** True while no full batch more would fit: the producer should slow down rather than make spans to refuse. */
  saturated(): boolean;
  /**
   * While export calls fail in a row, the last one's error; undefined before the first call and
   * once a call succeeds. For readiness: it stays set until the next call (a retry or a new batch).
   */
  failing(): string | undefined;
}

export function createSpanExportQueue<T>(exporter: BatchExporter<T>, opts: SpanExportQueueOptions<T>): SpanExportQueue<T> {
  return new BoundedSpanExportQueue<T>(exporter, opts);
}

const DEFAULT_MAX_RETRY_DELAY_MS = 30_000;
const JITTER = 0.2;

/**
 * gRPC codes a retry cannot fix (the OTLP specification's non-retryable set): the
 * collector understood the request and refused it. All other failures (UNAVAILABLE,
 * DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED, timeouts, I/O errors, ...) are retried.
 */
const GRPC_PERMANENT = new Set([
  2, // UNKNOWN
  3, // INVALID_ARGUMENT
  5, // NOT_FOUND
  6, // ALREADY_EXISTS
  7, // PERMISSION_DENIED
  9, // FAILED_PRECONDITION
  12, // UNIMPLEMENTED
  13, // INTERNAL
  16, // UNAUTHENTICATED
]);

/** A gRPC ServiceError (numeric code plus metadata) with a code in the permanent set. */
function isPermanent(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const e = error as { code?: unknown; metadata?: unknown };
  return typeof e.code === 'number' && e.metadata !== undefined && GRPC_PERMANENT.has(e.code);
}

function describe(error: unknown): string {
  if (error instanceof Error) return error.message;
  return error === undefined ? 'unknown error' : String(error);
}

interface Waiter {
  /** resolved once this many spans were exported or dropped */
  target: number;
  deadlineAt: number;
  resolve(): void;
}

class BoundedSpanExportQueue<T> implements SpanExportQueue<T> {
  private readonly _exporter: BatchExporter<T>;
  private readonly _maxQueueSize: number;
  private readonly _maxQueueBytes: number;
  private readonly _sizeOf: ((item: T) => number) | undefined;
  private readonly _maxExportBatchSize: number;
  private readonly _scheduledDelayMs: number;
  private readonly _exportTimeoutMs: number;
  /** -1: no limit */
  private readonly _maxRetries: number;
  private readonly _retryInitialDelayMs: number;
  private readonly _retryMaxDelayMs: number;
  private readonly _spool: SpanSpool<T> | undefined;
  private readonly _onExported: ((n: number) => void) | undefined;
  private readonly _onDropped: ((n: number, reason: SpanDropReason) => void) | undefined;
  private readonly _log: ((msg: string) => void) | undefined;

  private _queue: T[] = [];
  /** the batch being exported or waiting for a retry */
  private _batch: T[] | undefined;
  /** where _batch came from when it was read from the spool (acknowledged there once settled) */
  private _batchSpool: SpoolBatch<T> | undefined;
  /** failed attempts of _batch so far */
  private _attempts = 0;
  private _exporting = false;
  private _retryAt = 0;
  private _immediate: NodeJS.Immediate | undefined;
  private _delayTimer: NodeJS.Timeout | undefined;
  private _retryTimer: NodeJS.Timeout | undefined;
  /** the memory queue's next write to the spool, while spooling */
  private _spoolTimer: NodeJS.Timeout | undefined;
  /** forceFlush/shutdown calls under way: partial batches go at once */
  private _urgent = 0;
  private _closed = false;
  private _shutdown: Promise<void> | undefined;
  private readonly _waiters = new Set<Waiter>();

  /** spans accepted by add() (and found in the spool at start), and spans since exported or dropped: FIFO, so a flush waits for a count */
  private _accepted = 0;
  private _settled = 0;
  /** bytes of the queued spans and of _batch (with sizeOf) */
  private _queueBytes = 0;
  private _batchBytes = 0;

  private readonly _stats = { exported: 0, exportCalls: 0, failedCalls: 0, retries: 0, spooled: 0, replayed: 0, dropped: noDrops() };
  /** drops per reason in the current burst (since the first drop after a good spell) */
  private readonly _burst: Record<SpanDropReason, number> = noDrops();
  /** export calls failed in a row; the first is logged, and the recovery */
  private _failStreak = 0;
  /** the last failed call's error while _failStreak > 0 */
  private _lastError: string | undefined;
  /** spans written to the spool since it was last empty (for the log) */
  private _spoolBurst = 0;
  /** the spool's last write error, logged once until a write succeeds */
  private _spoolError: string | undefined;

  constructor(exporter: BatchExporter<T>, opts: SpanExportQueueOptions<T>) {
    this._exporter = exporter;
    this._maxQueueSize = Math.max(1, opts.maxQueueSize);
    this._maxQueueBytes = opts.sizeOf !== undefined && opts.maxQueueBytes !== undefined && opts.maxQueueBytes > 0 ? opts.maxQueueBytes : Infinity;
    this._sizeOf = this._maxQueueBytes < Infinity ? opts.sizeOf : undefined;
    this._maxExportBatchSize = Math.max(1, Math.min(opts.maxExportBatchSize, this._maxQueueSize));
    this._scheduledDelayMs = Math.max(0, opts.scheduledDelayMs);
    this._exportTimeoutMs = Math.max(1, opts.exportTimeoutMs);
    this._maxRetries = opts.maxRetries < 0 ? -1 : opts.maxRetries;
    this._retryInitialDelayMs = Math.max(1, opts.retryInitialDelayMs);
    this._retryMaxDelayMs = Math.max(this._retryInitialDelayMs, opts.retryMaxDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS);
    this._spool = opts.spool;
    this._onExported = opts.onExported;
    this._onDropped = opts.onDropped;
    this._log = opts.log;
    const spool = this._spool;
    if (spool !== undefined) {
      // spans an earlier run left: older than any added here, so they go first. Damaged ones
      // count as found, and as dropped (spool_corrupt) at once: found = delivered + dropped + left.
      const { records, corrupt, bytes, notes } = spool.opened;
      this._stats.replayed = records + corrupt;
      this._accepted = records + corrupt;
      for (const note of notes) this._logMsg(`spool: ${note}`);
      if (records > 0) this._logMsg(`spool ${spool.dir}: ${records} span(s) (${bytes} bytes) from an earlier run, sent first`);
      spool.onDrop((n, reason) => {
        this._settled += n;
        this._drop(n, reason, reason === 'spool_full'
          ? `the spool ${spool.dir} reached export.spoolMaxBytes (${spool.maxBytes}): its oldest spans go first`
          : `damaged records in the spool ${spool.dir} were skipped`);
        this._wake();
      });
      if (records > 0) this._schedule();
    }
  }

  add(span: T): boolean {
    return this.offer(() => span);
  }

  offer(make: () => T): boolean {
    if (this._closed || this._queue.length + (this._batch?.length ?? 0) >= this._maxQueueSize ||
        this._queueBytes + this._batchBytes >= this._maxQueueBytes) {
      this._drop(1, 'queue_full', this._closed ? 'the queue is shut down'
        : this._queue.length + (this._batch?.length ?? 0) >= this._maxQueueSize ? `maxQueueSize (${this._maxQueueSize}) reached`
          : `maxQueueBytes (${this._maxQueueBytes}) reached`);
      return false;
    }
    if (this._burst.queue_full > 0) this._endBurst('queue_full');
    let span: T;
    try {
      span = make();
    } catch (error) {
      // a span that cannot be prepared (encoded) is dropped like one that cannot be exported
      this._drop(1, 'export_failed', `a span could not be prepared for export: ${describe(error)}`);
      return false;
    }
    this._queue.push(span);
    if (this._sizeOf !== undefined) this._queueBytes += this._sizeOf(span);
    this._accepted++;
    if (this._spooling()) this._scheduleSpoolWrite();
    else if (!this._exporting && this._batch === undefined) this._schedule();
    return true;
  }

  forceFlush(deadlineMs: number): Promise<void> {
    return this._flush(this._accepted, Date.now() + Math.max(0, deadlineMs));
  }

  shutdown(deadlineMs: number): Promise<void> {
    return (this._shutdown ??= this._doShutdown(Date.now() + Math.max(0, deadlineMs)));
  }

  saturated(): boolean {
    const held = this._queue.length + (this._batch?.length ?? 0);
    if (held + this._maxExportBatchSize > this._maxQueueSize) return true;
    if (this._maxQueueBytes === Infinity || held === 0) return false;
    const bytes = this._queueBytes + this._batchBytes;
    return bytes + (bytes / held) * this._maxExportBatchSize > this._maxQueueBytes;
  }

  failing(): string | undefined {
    return this._failStreak > 0 ? this._lastError : undefined;
  }

  stats(): SpanExportQueueStats {
    const s = this._stats;
    const spool = this._spool;
    return {
      queued: this._queue.length, exported: s.exported, dropped: { ...s.dropped },
      exportCalls: s.exportCalls, failedCalls: s.failedCalls, retries: s.retries,
      inFlight: this._batch?.length ?? 0, heldBytes: this._queueBytes + this._batchBytes,
      ...(spool !== undefined && { spool: { spooled: s.spooled, replayed: s.replayed, spans: spool.spans(), bytes: spool.bytes() } }),
    };
  }

  // ------------------------------------------------------------- the spool

  /** New spans go to the spool: exports fail, or the spool holds spans they must follow. */
  private _spooling(): boolean {
    return this._spool !== undefined && (this._failStreak > 0 || this._spool.spans() > 0);
  }

  /** The queue's next write to the spool: at once for a full batch (or a flush), else after scheduledDelayMs. */
  private _scheduleSpoolWrite(): void {
    if (this._spoolTimer !== undefined && this._queue.length < this._maxExportBatchSize && this._urgent === 0) return;
    if (this._spoolTimer !== undefined) clearTimeout(this._spoolTimer);
    const wait = this._queue.length >= this._maxExportBatchSize || this._urgent > 0 ? 0 : this._scheduledDelayMs;
    this._spoolTimer = setTimeout(() => { this._spoolTimer = undefined; this._spoolQueue(); }, wait);
    this._spoolTimer.unref();
  }

  /** Writes the queued spans to the spool (those it takes leave memory). */
  private _spoolQueue(): void {
    if (!this._spooling() || this._queue.length === 0) {
      this._schedule();
      return;
    }
    const n = this._toSpool(this._queue);
    if (n > 0) {
      if (this._sizeOf !== undefined) {
        for (let i = 0; i < n; i++) this._queueBytes -= this._sizeOf(this._queue[i]!);
      }
      this._queue = n === this._queue.length ? [] : this._queue.slice(n);
    }
    // what the spool did not take stays queued (bounded by maxQueueSize); tried again with the next spans
    this._schedule();
  }

  /** Appends items to the spool: how many it took. Logs when spooling starts and when writes fail. */
  private _toSpool(items: readonly T[]): number {
    const spool = this._spool!;
    if (items.length === 0) return 0;
    const n = spool.append(items);
    this._stats.spooled += n;
    if (n > 0 && this._spoolBurst === 0) {
      this._logMsg(`spooling spans to ${spool.dir} until the collector takes them (export.spoolMaxBytes ${spool.maxBytes})`);
    }
    this._spoolBurst += n;
    const err = spool.failing();
    if (err !== undefined && err !== this._spoolError) this._logMsg(`${err}; spans stay queued in memory`);
    this._spoolError = err;
    return n;
  }

  // ------------------------------------------------------------- scheduling

  /** Arms the next export: at once for a full batch, a flush or the spool, else after scheduledDelayMs. */
  private _schedule(): void {
    if (this._exporting || this._retryTimer !== undefined || this._immediate !== undefined) return;
    const fromSpool = this._spool !== undefined && this._spool.unread() > 0;
    if (this._batch === undefined && this._queue.length === 0 && !fromSpool) return;
    if (this._batch !== undefined || fromSpool || this._queue.length >= this._maxExportBatchSize || this._urgent > 0) {
      if (this._delayTimer !== undefined) { clearTimeout(this._delayTimer); this._delayTimer = undefined; }
      // Not unref()'d, unlike the timers: libuv leaves an unref'd immediate out of the poll
      // timeout, so with nothing else due it waited for the next I/O (up to a second here).
      // It keeps the process alive for one loop turn only.
      this._immediate = setImmediate(() => { this._immediate = undefined; this._exportNext(); });
    } else if (this._delayTimer === undefined) {
      this._delayTimer = setTimeout(() => { this._delayTimer = undefined; this._exportNext(); }, this._scheduledDelayMs);
      this._delayTimer.unref();
    }
  }

  private _exportNext(): void {
    if (this._exporting) return;
    if (this._batch === undefined) {
      const spool = this._spool;
      if (spool !== undefined && spool.unread() > 0) {
        // the spool first: it holds the oldest spans
        const b = spool.read(this._maxExportBatchSize);
        if (b !== undefined) {
          this._batch = b.items;
          this._batchSpool = b;
          this._batchBytes = this._bytesOf(b.items);
        }
      }
      if (this._batch === undefined) {
        if (this._queue.length === 0) return;
        if (this._spooling() && this._failStreak === 0) {
          // the spool holds older spans (one batch of them out now): the queue follows them there
          this._scheduleSpoolWrite();
          return;
        }
        this._batch = this._queue.length <= this._maxExportBatchSize
          ? this._queue.splice(0)
          : this._queue.splice(0, this._maxExportBatchSize);
        this._batchSpool = undefined;
        const bytes = this._bytesOf(this._batch);
        this._queueBytes -= bytes;
        this._batchBytes = bytes;
      }
      // read back after a failed call: a retry of the spans that call held
      this._attempts = this._batchSpool !== undefined && this._failStreak > 0 ? 1 : 0;
    }
    const batch = this._batch;
    this._exporting = true;
    this._stats.exportCalls++;
    if (this._attempts > 0) this._stats.retries++;

    let done = false;
    const finish = (result: ExportResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      this._exported(batch, result);
    };
    const timer = setTimeout(() => finish({
      code: ExportResultCode.FAILED, error: new Error(`export timed out after ${this._exportTimeoutMs} ms`),
    }), this._exportTimeoutMs);
    timer.unref();
    try {
      this._exporter.export(batch, finish);
    } catch (error) {
      finish({ code: ExportResultCode.FAILED, error: error as Error });
    }
  }

  private _bytesOf(items: readonly T[]): number {
    if (this._sizeOf === undefined) return 0;
    let n = 0;
    for (const item of items) n += this._sizeOf(item);
    return n;
  }

  /** The batch is settled (delivered or given up): it leaves memory, and the spool if it came from there. */
  private _releaseBatch(): void {
    const from = this._batchSpool;
    this._batch = undefined;
    this._batchSpool = undefined;
    this._batchBytes = 0;
    if (from !== undefined) this._spool!.ack(from);
  }

  /** The outcome of one export call of `batch`. */
  private _exported(batch: T[], result: ExportResult): void {
    this._exporting = false;
    if (batch !== this._batch) return; // given up at the shutdown deadline while in flight
    if (result.code === ExportResultCode.SUCCESS) {
      if (this._failStreak > 0) {
        this._logMsg(`export recovered after ${this._failStreak} failed call(s)`);
        this._failStreak = 0;
      }
      if (this._burst.export_failed > 0) this._endBurst('export_failed');
      this._releaseBatch();
      if (this._spoolBurst > 0 && this._spool!.spans() === 0) {
        this._logMsg(`spool ${this._spool!.dir} is empty again: every span written to it since it last was (${this._spoolBurst}) is delivered or counted`);
        this._spoolBurst = 0;
      }
      this._stats.exported += batch.length;
      this._settled += batch.length;
      this._call(() => this._onExported?.(batch.length));
      this._wake();
      this._schedule();
      return;
    }

    this._stats.failedCalls++;
    this._attempts++;
    const why = describe(result.error);
    this._lastError = why;
    const permanent = isPermanent(result.error);
    if (this._failStreak++ === 0 && !permanent) {
      const keep = this._spool !== undefined ? `spooling to ${this._spool.dir} and retrying until the collector takes them`
        : this._maxRetries < 0 ? 'retrying a batch until it goes, queueing new spans meanwhile (up to maxQueueSize)'
          : `retrying a batch up to ${this._maxRetries} time(s) with backoff, queueing new spans meanwhile`;
      this._logMsg(`export failed (${why}); ${keep}`);
    }
    if (permanent || (this._spool === undefined && this._maxRetries >= 0 && this._attempts > this._maxRetries)) {
      this._releaseBatch();
      this._settled += batch.length;
      this._drop(batch.length, 'export_failed', permanent
        ? `the collector refused a batch (${why}); retrying would not help`
        : `a batch failed ${this._attempts} time(s), last: ${why}`);
      this._wake();
      this._schedule();
      return;
    }
    if (this._spool !== undefined && (this._batchSpool === undefined || this._batchSpool.detached)) {
      // a batch from memory: it and the queue behind it go to the spool, in order; the retry reads them back
      const n = this._toSpool(batch);
      if (n === batch.length) {
        this._batch = undefined;
        this._batchSpool = undefined;
        this._batchBytes = 0;
      } else if (n > 0) {
        this._batch = batch.slice(n);
        this._batchSpool = undefined;
        this._batchBytes = this._bytesOf(this._batch);
      }
      this._spoolQueue();
    }
    // the delay grows with the failed calls in a row, not per batch: a collector still away
    // is not asked again at once because another batch is up
    const base = Math.min(this._retryInitialDelayMs * 2 ** Math.min(this._failStreak - 1, 30), this._retryMaxDelayMs);
    const delay = Math.max(1, Math.round(base * (1 + (Math.random() * 2 - 1) * JITTER)));
    this._retryAt = Date.now() + delay;
    if (this._immediate !== undefined) { clearImmediate(this._immediate); this._immediate = undefined; }
    if (this._delayTimer !== undefined) { clearTimeout(this._delayTimer); this._delayTimer = undefined; }
    this._retryTimer = setTimeout(() => { this._retryTimer = undefined; this._exportNext(); }, delay);
    this._retryTimer.unref();
    // a flush that cannot outlast the backoff need not wait for it
    for (const w of this._waiters) if (w.deadlineAt < this._retryAt) this._resolve(w);
  }

  // ------------------------------------------------------------- flush and shutdown

  /** Resolves once `target` spans are settled, at deadlineAt, or when that cannot happen in time. */
  private _flush(target: number, deadlineAt: number): Promise<void> {
    if (this._settled >= target || Date.now() >= deadlineAt) return Promise.resolve();
    if (this._retryTimer !== undefined && this._retryAt > deadlineAt) return Promise.resolve();
    return new Promise<void>((resolve) => {
      // ref'd on purpose: while someone awaits a flush, the process must not exit under it
      const timer = setTimeout(() => this._resolve(w), deadlineAt - Date.now());
      const w: Waiter = {
        target, deadlineAt,
        resolve: () => { clearTimeout(timer); this._urgent--; resolve(); },
      };
      this._waiters.add(w);
      this._urgent++;
      if (this._spooling() && this._queue.length > 0) this._scheduleSpoolWrite();
      this._schedule();
    });
  }

  private _resolve(w: Waiter): void {
    if (this._waiters.delete(w)) w.resolve();
  }

  private _wake(): void {
    for (const w of this._waiters) if (this._settled >= w.target) this._resolve(w);
  }

  private async _doShutdown(deadlineAt: number): Promise<void> {
    this._closed = true;
    await this._flush(this._accepted, deadlineAt);

    for (const t of [this._delayTimer, this._retryTimer, this._spoolTimer]) if (t !== undefined) clearTimeout(t);
    if (this._immediate !== undefined) clearImmediate(this._immediate);
    this._delayTimer = this._retryTimer = this._spoolTimer = this._immediate = undefined;
    // a batch from the spool stays there, unacknowledged, for the next run; one from memory is
    // held here only, like the queue
    const fromSpool = this._batchSpool !== undefined && !this._batchSpool.detached;
    const held = fromSpool ? [] : (this._batch ?? []);
    // a batch whose call is still out may have reached the collector: unconfirmed, not undelivered
    const unconfirmed = this._exporting ? held.length : 0;
    const rest = [...held, ...this._queue];
    this._queue = [];
    this._batch = undefined; // an export still in flight is ignored when it returns
    this._batchSpool = undefined;
    this._queueBytes = this._batchBytes = 0;
    // with a spool, what is held goes there for the next run (a batch in flight too: it may
    // then arrive twice, rather than perhaps never)
    const spooled = this._spool !== undefined ? this._toSpool(rest) : 0;
    const lostUnconfirmed = Math.max(0, unconfirmed - spooled);
    const lost = rest.length - spooled - lostUnconfirmed;
    this._settled += rest.length;
    if (spooled > 0) this._logMsg(`${spooled} span(s) written to the spool ${this._spool!.dir} for the next run`);
    if (lost > 0) this._drop(lost, 'shutdown_deadline', 'not exported before the shutdown deadline');
    if (lostUnconfirmed > 0) this._drop(lostUnconfirmed, 'shutdown_unconfirmed', 'sent, but not answered before the shutdown deadline');
    this._spool?.close();
    this._wake();
    for (const reason of SPAN_DROP_REASONS) if (this._burst[reason] > 0) this._endBurst(reason);

    let timer: NodeJS.Timeout | undefined;
    const stopped = Promise.resolve()
      .then(() => this._exporter.shutdown())
      .catch((error: unknown) => this._logMsg(`exporter shutdown failed: ${describe(error)}`));
    const late = new Promise<void>((resolve) => { timer = setTimeout(resolve, Math.max(0, deadlineAt - Date.now())); });
    await Promise.race([stopped, late]);
    clearTimeout(timer);
  }

  // ------------------------------------------------------------- accounting

  private _drop(n: number, reason: SpanDropReason, why: string): void {
    this._stats.dropped[reason] += n;
    if (this._burst[reason] === 0) this._logMsg(`dropping spans (${reason}): ${why}`);
    this._burst[reason] += n;
    this._call(() => this._onDropped?.(n, reason));
  }

  private _endBurst(reason: SpanDropReason): void {
    this._logMsg(`dropped ${this._burst[reason]} span(s) (${reason})`);
    this._burst[reason] = 0;
  }

  private _logMsg(msg: string): void {
    this._call(() => this._log?.(msg));
  }

  /** Callbacks belong to the caller; their exceptions must not break the queue. */
  private _call(fn: () => void): void {
    try { fn(); } catch { /* the caller's bug; nothing to report it to */ }
  }
}
