// The span sinks of `tcpspan run`: readable console lines, and span exporters behind a bounded queue.
import type { InstrumentationScope } from '@opentelemetry/core';
import type { SpanSink } from './bridge.js';
import type { SpanData } from '../correlate/span-data.js';
import { CONSOLE_HEADER, formatConsoleLine, formatDetectionLine } from '../export/console-line.js';
import { createSpanExportQueue, type BatchExporter, type SpanExportQueueOptions } from '../export/span-export-queue.js';

export const SCOPE: InstrumentationScope = { name: 'tcpspan', version: '0.1.0' };

/**
 * One line per connection end on a stream (stdout by default), its service and container at the end when known; the header once.
 * Finished ends only: checkpoints of open ends go to the span exporters.
 */
export function createConsoleSink(write: (text: string) => void): SpanSink {
  let printed = 0;
  let failed = 0;
  let headerDone = false;
  return {
    name: 'console',
    accept(rec, span) {
      try {
        if (!headerDone) { write(`${CONSOLE_HEADER}\n`); headerDone = true; }
        write(`${formatConsoleLine(rec, span.endTime[0] * 1000 + Math.floor(span.endTime[1] / 1e6), span.owner)}\n`);
        printed++;
      } catch {
        failed++;
      }
    },
    acceptDetection(span) {
      try {
        if (!headerDone) { write(`${CONSOLE_HEADER}\n`); headerDone = true; }
        write(`${formatDetectionLine(span)}\n`);
        printed++;
      } catch {
        failed++;
      }
    },
    shutdown: async () => undefined,
    exported: () => printed,
    dropped: () => ({ write_failed: failed }),
  };
}

/** A sink behind an export queue: it can tell whether its exporter is failing. */
export interface ExporterSink extends SpanSink {
  /** The last export call's error while calls fail in a row (for readiness); undefined otherwise. */
  failing(): string | undefined;
}

/**
 * Spans to an exporter (OTLP gRPC, OTLP/JSON file) through a bounded, retrying queue;
 * `prepare` turns a span into what the queue holds (OTLP gRPC: its protobuf bytes, with their
 * size for maxQueueBytes and a spool when configured).
 */
export function createExporterSink<T>(name: string, exporter: BatchExporter<T>, prepare: (span: SpanData) => T,
                                      queue: Omit<SpanExportQueueOptions<T>, 'log'>, log: (m: string) => void): ExporterSink {
  const q = createSpanExportQueue(exporter, { ...queue, log: (m: string) => log(`${name}: ${m}`) });
  return {
    name,
    accept(_rec, span) {
      // a full queue refuses (counted) before the span is prepared
      q.offer(() => prepare(span));
    },
    acceptDetection(span) {
      q.offer(() => prepare(span));
    },
    acceptCheckpoint(_cp, span) {
      q.offer(() => prepare(span));
    },
    shutdown: (deadlineMs) => q.shutdown(deadlineMs),
    saturated: () => q.saturated(),
    failing: () => q.failing(),
    exported: () => q.stats().exported,
    dropped: () => q.stats().dropped,
    spool: () => q.stats().spool,
  };
}
