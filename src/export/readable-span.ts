// SpanData (correlate stage) as the SDK's ReadableSpan, the shape the SDK's SpanExporters
// take (the OTLP/JSON file exporter uses it; OTLP gRPC encodes SpanData directly).
//
// A plain object rather than an SDK Span: the span is already finished, so none of
// the Span machinery (limits, processors, clock, ended checks) has anything to do,
// and building one cost about three times as much per span on these machines.
import { SpanKind, SpanStatusCode, TraceFlags, type SpanContext, type SpanStatus } from '@opentelemetry/api';
import { TraceState, type InstrumentationScope } from '@opentelemetry/core';
import type { Resource } from '@opentelemetry/resources';
import type { Link } from '@opentelemetry/api';
import type { ReadableSpan, TimedEvent } from '@opentelemetry/sdk-trace';
import type { HrTime, SpanData } from '../correlate/span-data.js';

const KINDS: Record<SpanData['kind'], SpanKind> = {
  client: SpanKind.CLIENT,
  server: SpanKind.SERVER,
  internal: SpanKind.INTERNAL,
};

const UNSET: SpanStatus = Object.freeze({ code: SpanStatusCode.UNSET });

/**
 * The ReadableSpan of one connection end, sampled. A server span's parent (the
 * client span) is marked remote: it is the other end's span, known to this end
 * only because both derive the ids from the same ISNs (correlate/trace-id.ts).
 * Attribute objects are shared with `d`, not copied.
 */
export function toReadableSpan(d: SpanData, resource: Resource, scope: InstrumentationScope): ReadableSpan {
  const ctx: SpanContext = { traceId: d.traceId, spanId: d.spanId, traceFlags: TraceFlags.SAMPLED };
  if (d.traceState !== undefined) ctx.traceState = traceState(d.traceState);
  const events: TimedEvent[] = new Array(d.events.length);
  for (let i = 0; i < d.events.length; i++) {
    const e = d.events[i]!;
    events[i] = { name: e.name, time: e.time, attributes: e.attributes, droppedAttributesCount: 0 };
  }
  const span: ReadableSpan = {
    name: d.name,
    kind: KINDS[d.kind],
    spanContext: () => ctx,
    parentSpanContext: d.parentSpanId === undefined
      ? undefined
      : { traceId: d.traceId, spanId: d.parentSpanId, traceFlags: TraceFlags.SAMPLED, isRemote: d.kind === 'server' },
    startTime: d.startTime,
    endTime: d.endTime,
    duration: hrDuration(d.startTime, d.endTime),
    status: d.status.code === 'error'
      ? { code: SpanStatusCode.ERROR, message: d.status.message }
      : UNSET,
    attributes: d.attributes,
    links: d.links === undefined ? [] : d.links.map(toLink),
    events,
    ended: true,
    resource,
    instrumentationScope: scope,
    droppedAttributesCount: 0,
    droppedEventsCount: d.droppedEventsCount,
    droppedLinksCount: d.droppedLinksCount ?? 0,
  };
  return span;
}

// a sampler writes one of two values: parsed once each
const TRACE_STATES = new Map<string, TraceState>();

function traceState(text: string): TraceState {
  let ts = TRACE_STATES.get(text);
  if (ts === undefined) {
    if (TRACE_STATES.size >= 64) TRACE_STATES.clear();
    TRACE_STATES.set(text, ts = new TraceState(text));
  }
  return ts;
}

/** A link to a request's span: another process's span, so remote. */
function toLink(l: { traceId: string; spanId: string; flags: number }): Link {
  return { context: { traceId: l.traceId, spanId: l.spanId, traceFlags: l.flags, isRemote: true }, attributes: {}, droppedAttributesCount: 0 };
}

function hrDuration(start: HrTime, end: HrTime): HrTime {
  let sec = end[0] - start[0], ns = end[1] - start[1];
  if (ns < 0) { sec--; ns += 1e9; }
  return [sec, ns];
}
