// The span sinks of `tcpspan run`: readable console lines, and span exporters behind a bounded queue.
import type { Resource } from '@opentelemetry/resources';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { SpanExporter } from '@opentelemetry/sdk-trace';
import type { SpanSink } from './bridge.js';
import { CONSOLE_HEADER, formatConsoleLine } from '../export/console-line.js';
import { toReadableSpan } from '../export/readable-span.js';
import { createSpanExportQueue, type SpanExportQueueOptions } from '../export/span-export-queue.js';

export const SCOPE: InstrumentationScope = { name: 'tcpspan', version: '0.1.0' };

/** One line per connection end on a stream (stdout by default); the header once. */
export function createConsoleSink(write: (text: string) => void): SpanSink {
  let printed = 0;
  let failed = 0;
  let headerDone = false;
  return {
    name: 'console',
    accept(rec, span) {
      try {
        if (!headerDone) { write(`${CONSOLE_HEADER}\n`); headerDone = true; }
        write(`${formatConsoleLine(rec, Number(span.endTimeUnixNano / 1_000_000n))}\n`);
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

/** Spans to a SpanExporter (OTLP gRPC, OTLP/JSON file) through a bounded, retrying queue. */
export function createExporterSink(name: string, exporter: SpanExporter, resource: Resource,
                                   queue: Omit<SpanExportQueueOptions, 'log'>, log: (m: string) => void): SpanSink {
  const q = createSpanExportQueue(exporter, { ...queue, log: (m: string) => log(`${name}: ${m}`) });
  return {
    name,
    accept(_rec, span) {
      q.add(toReadableSpan(span, resource, SCOPE));
    },
    shutdown: (deadlineMs) => q.shutdown(deadlineMs),
    exported: () => q.stats().exported,
    dropped: () => q.stats().dropped,
  };
}
