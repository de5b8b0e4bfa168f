// A bounded queue in front of one SpanExporter: batches, one export in flight,
// retries with backoff, and a count with a reason for every span it gives up.
//
// Why not the SDK's BatchSpanProcessor: it takes Span objects from a tracer (we
// have finished ReadableSpans), and it loses a batch the exporter fails, while the
// OTLP gRPC exporter (0.301) does not retry UNAVAILABLE itself: without retries
// here, a collector restart would lose up to a batch per export attempt.
//
// Memory bound: at most maxQueueSize spans are held, queued and in the batch being
// exported or waiting for a retry together.
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';

/** What the queue drives: the SDK's SpanExporter shape, over any span type. */
export interface BatchExporter<T> {
  export(items: T[], resultCallback: (result: ExportResult) => void): void;
  shutdown(): Promise<void>;
}

/**
 * Why a span was not exported:
 * - `queue_full`        refused by add(): maxQueueSize spans were held (or the queue was shut down)
 * - `export_failed`     its batch failed maxRetries + 1 times, or with an error a retry cannot fix
 * - `shutdown_deadline` still held, not sent, when shutdown's deadline passed
 * - `shutdown_unconfirmed` sent, but its export call had not answered when shutdown's deadline
 *                       passed: the collector may or may not have it (counted apart, never as delivered)
 */
export type SpanDropReason = 'queue_full' | 'export_failed' | 'shutdown_deadline' | 'shutdown_unconfirmed';

export const SPAN_DROP_REASONS: readonly SpanDropReason[] = ['queue_full', 'export_failed', 'shutdown_deadline', 'shutdown_unconfirmed'];

export interface SpanExportQueueOptions {
  /** Spans held at most (queued plus the batch being exported); add() refuses beyond. */
  maxQueueSize: number;
  /** Spans per export call at most. */
  maxExportBatchSize: number;
  /** Wait before exporting a partial batch; a full batch goes at once. */
  scheduledDelayMs: number;
  /** An export call whose callback has not come by then counts as failed (and is retried). */
  exportTimeoutMs: number;
  /** Retries of a failed batch before its spans are dropped as export_failed. */
  maxRetries: number;
  /** Delay before the first retry; doubled for each further one (with ±20 % jitter, at most 30 s). */
  retryInitialDelayMs: number;
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

export function createSpanExportQueue<T>(exporter: BatchExporter<T>, opts: SpanExportQueueOptions): SpanExportQueue<T> {
  return new BoundedSpanExportQueue<T>(exporter, opts);
}

const MAX_RETRY_DELAY_MS = 30_000;
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
  private readonly _maxExportBatchSize: number;
  private readonly _scheduledDelayMs: number;
  private readonly _exportTimeoutMs: number;
  private readonly _maxRetries: number;
  private readonly _retryInitialDelayMs: number;
  private readonly _onExported: ((n: number) => void) | undefined;
  private readonly _onDropped: ((n: number, reason: SpanDropReason) => void) | undefined;
  private readonly _log: ((msg: string) => void) | undefined;

  private _queue: T[] = [];
  /** the batch being exported or waiting for a retry */
  private _batch: T[] | undefined;
  /** failed attempts of _batch so far */
  private _attempts = 0;
  private _exporting = false;
  private _retryAt = 0;
  private _immediate: NodeJS.Immediate | undefined;
  private _delayTimer: NodeJS.Timeout | undefined;
  private _retryTimer: NodeJS.Timeout | undefined;
  /** forceFlush/shutdown calls under way: partial batches go at once */
  private _urgent = 0;
  private _closed = false;
  private _shutdown: Promise<void> | undefined;
  private readonly _waiters = new Set<Waiter>();

  /** spans accepted by add(), and spans since exported or dropped: FIFO, so a flush waits for a count */
  private _accepted = 0;
  private _settled = 0;

  private readonly _stats = {
    exported: 0, exportCalls: 0, failedCalls: 0, retries: 0,
    dropped: { queue_full: 0, export_failed: 0, shutdown_deadline: 0, shutdown_unconfirmed: 0 } as Record<SpanDropReason, number>,
  };
  /** drops per reason in the current burst (since the first drop after a good spell) */
  private readonly _burst: Record<SpanDropReason, number> = { queue_full: 0, export_failed: 0, shutdown_deadline: 0, shutdown_unconfirmed: 0 };
  /** export calls failed in a row; the first is logged, and the recovery */
  private _failStreak = 0;
  /** the last failed call's error while _failStreak > 0 */
  private _lastError: string | undefined;

  constructor(exporter: BatchExporter<T>, opts: SpanExportQueueOptions) {
    this._exporter = exporter;
    this._maxQueueSize = Math.max(1, opts.maxQueueSize);
    this._maxExportBatchSize = Math.max(1, Math.min(opts.maxExportBatchSize, this._maxQueueSize));
    this._scheduledDelayMs = Math.max(0, opts.scheduledDelayMs);
    this._exportTimeoutMs = Math.max(1, opts.exportTimeoutMs);
    this._maxRetries = Math.max(0, opts.maxRetries);
    this._retryInitialDelayMs = Math.max(1, opts.retryInitialDelayMs);
    this._onExported = opts.onExported;
    this._onDropped = opts.onDropped;
    this._log = opts.log;
  }

  add(span: T): boolean {
    return this.offer(() => span);
  }

  offer(make: () => T): boolean {
    if (this._closed || this._queue.length + (this._batch?.length ?? 0) >= this._maxQueueSize) {
      this._drop(1, 'queue_full', this._closed ? 'the queue is shut down' : `maxQueueSize (${this._maxQueueSize}) reached`);
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
    this._accepted++;
    if (!this._exporting && this._batch === undefined) this._schedule();
    return true;
  }

  forceFlush(deadlineMs: number): Promise<void> {
    return this._flush(this._accepted, Date.now() + Math.max(0, deadlineMs));
  }

  shutdown(deadlineMs: number): Promise<void> {
    return (this._shutdown ??= this._doShutdown(Date.now() + Math.max(0, deadlineMs)));
  }

  saturated(): boolean {
    return this._queue.length + (this._batch?.length ?? 0) + this._maxExportBatchSize > this._maxQueueSize;
  }

  failing(): string | undefined {
    return this._failStreak > 0 ? this._lastError : undefined;
  }

  stats(): SpanExportQueueStats {
    const s = this._stats;
    return {
      queued: this._queue.length, exported: s.exported, dropped: { ...s.dropped },
      exportCalls: s.exportCalls, failedCalls: s.failedCalls, retries: s.retries,
      inFlight: this._batch?.length ?? 0,
    };
  }

  // ------------------------------------------------------------- scheduling

  /** Arms the next export: at once for a full batch or a flush, else after scheduledDelayMs. */
  private _schedule(): void {
    if (this._exporting || this._retryTimer !== undefined || this._immediate !== undefined) return;
    if (this._batch === undefined && this._queue.length === 0) return;
    if (this._batch !== undefined || this._queue.length >= this._maxExportBatchSize || this._urgent > 0) {
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
      if (this._queue.length === 0) return;
      this._batch = this._queue.length <= this._maxExportBatchSize
        ? this._queue.splice(0)
        : this._queue.splice(0, this._maxExportBatchSize);
      this._attempts = 0;
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
      this._batch = undefined;
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
      this._logMsg(`export failed (${why}); retrying a batch up to ${this._maxRetries} time(s) with backoff, queueing new spans meanwhile`);
    }
    if (permanent || this._attempts > this._maxRetries) {
      this._batch = undefined;
      this._settled += batch.length;
      this._drop(batch.length, 'export_failed', permanent
        ? `the collector refused a batch (${why}); retrying would not help`
        : `a batch failed ${this._attempts} time(s), last: ${why}`);
      this._wake();
      this._schedule();
      return;
    }
    const base = Math.min(this._retryInitialDelayMs * 2 ** (this._attempts - 1), MAX_RETRY_DELAY_MS);
    const delay = Math.max(1, Math.round(base * (1 + (Math.random() * 2 - 1) * JITTER)));
    this._retryAt = Date.now() + delay;
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

    for (const t of [this._delayTimer, this._retryTimer]) if (t !== undefined) clearTimeout(t);
    if (this._immediate !== undefined) clearImmediate(this._immediate);
    this._delayTimer = this._retryTimer = this._immediate = undefined;
    // a batch whose call is still out may have reached the collector: unconfirmed, not undelivered
    const unconfirmed = this._exporting ? (this._batch?.length ?? 0) : 0;
    const left = this._queue.length + (this._batch?.length ?? 0) - unconfirmed;
    this._queue = [];
    this._batch = undefined; // an export still in flight is ignored when it returns
    this._settled += left + unconfirmed;
    if (left > 0) this._drop(left, 'shutdown_deadline', 'not exported before the shutdown deadline');
    if (unconfirmed > 0) this._drop(unconfirmed, 'shutdown_unconfirmed', 'sent, but not answered before the shutdown deadline');
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
