// A real OTLP/gRPC receiver for tests: a @grpc/grpc-js server on 127.0.0.1 that
// decodes every Export call with protobufjs from the official opentelemetry-proto
// .proto files, so a test sees exactly what went over the wire, not what an
// exporter meant to send.
//
// The .proto files come from the devDependency `otlp-protos`, an npm alias of
// @elastic/mockotlpserver@0.10.0, which ships opentelemetry-proto v1.4.0
// byte-identical to the upstream tag. (@opentelemetry/otlp-transformer only
// ships generated code, which is what the exporter itself encodes with; decoding
// with that same code would hide its bugs.)
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import protobuf from 'protobufjs';

// ---------------------------------------------------------------- public types

/** An attribute value as plain JS. Ints that do not fit a double exactly stay bigint. */
export type AttrValue =
  | string | number | bigint | boolean | Buffer | null
  | AttrValue[] | { [key: string]: AttrValue };
export type Attributes = Record<string, AttrValue>;

export interface ReceivedEvent {
  name: string;
  timeUnixNano: bigint;
  attributes: Attributes;
}

export interface ReceivedLink {
  traceId: string;
  spanId: string;
  traceState: string;
  flags: number;
  attributes: Attributes;
}

/** One span, flattened with the resource and scope it was sent under. */
export interface ReceivedSpan {
  resource: Attributes;
  scopeName: string;
  scopeVersion: string;
  /** Lowercase hex; parentSpanId is '' for a root span. */
  traceId: string;
  spanId: string;
  parentSpanId: string;
  traceState: string;
  /** Span.flags (W3C trace flags in bits 0-7, is-remote bits 8-9). */
  flags: number;
  name: string;
  /** Span.SpanKind number, and its proto name (e.g. 'SPAN_KIND_SERVER'). */
  kind: number;
  kindName: string;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Attributes;
  events: ReceivedEvent[];
  links: ReceivedLink[];
  /** Status.StatusCode number: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
}

export interface NumberPoint {
  attributes: Attributes;
  startTimeUnixNano: bigint;
  timeUnixNano: bigint;
  /** as_int is converted to a number (exact below 2^53). */
  value: number;
  valueType: 'int' | 'double';
}

export interface HistogramPoint {
  attributes: Attributes;
  startTimeUnixNano: bigint;
  timeUnixNano: bigint;
  count: number;
  /** null when the exporter left the optional field out. */
  sum: number | null;
  min: number | null;
  max: number | null;
  bucketCounts: number[];
  explicitBounds: number[];
}

interface MetricBase {
  resource: Attributes;
  scopeName: string;
  scopeVersion: string;
  name: string;
  description: string;
  unit: string;
}

/** One metric, flattened with its resource and scope; one entry per metric per export call. */
export type ReceivedMetric = MetricBase & (
  | { type: 'gauge'; dataPoints: NumberPoint[] }
  | { type: 'sum'; isMonotonic: boolean; aggregationTemporality: number; dataPoints: NumberPoint[] }
  | { type: 'histogram'; aggregationTemporality: number; dataPoints: HistogramPoint[] }
  // Not flattened: kept as protobufjs decoded them, so nothing is silently dropped.
  | { type: 'exponentialHistogram' | 'summary' | 'empty'; dataPoints: unknown[] }
);

/** Export calls received per service (including rejected ones), and how many were rejected. */
export interface RequestCounts {
  trace: number;
  metrics: number;
  logs: number;
  rejected: number;
}

export interface OtlpReceiverOptions {
  /** Reject the first N export calls (all services together) with `failWith`. */
  failFirst?: number;
  /** gRPC status for the rejected calls; UNAVAILABLE, as a collector going away, by default. */
  failWith?: grpc.status;
  /** Hold every call this long before answering (and recording), like a slow collector. */
  delayMs?: number;
  /** Serve TLS with this key and certificate (PEM); with `clientCa`, require client certificates it signed. */
  tls?: { key: Buffer; cert: Buffer; clientCa?: Buffer };
  /** Listen on this port of 127.0.0.1 (a collector coming back where tcpspan already exports to); default: an ephemeral one. */
  port?: number;
}

export interface OtlpReceiver {
  /** 'http://127.0.0.1:PORT' ('https://localhost:PORT' with opts.tls): the scheme tells the OTLP exporters which credentials to use. */
  readonly endpoint: string;
  readonly port: number;
  /** A snapshot; the receiver keeps counting. */
  readonly requests: RequestCounts;
  spans(): ReceivedSpan[];
  /** Wall-clock arrival time (unix ns) of each span, in the order of spans(). */
  arrivals(): bigint[];
  metrics(): ReceivedMetric[];
  /** Resolves with all spans once at least n arrived; rejects after timeoutMs saying how many did. */
  waitForSpans(n: number, timeoutMs?: number): Promise<ReceivedSpan[]>;
  /** Resolves with the latest metric of that name once one arrived; rejects after timeoutMs. */
  waitForMetric(name: string, timeoutMs?: number): Promise<ReceivedMetric>;
  /** Stops the server and rejects pending waits; safe to call more than once. */
  close(): Promise<void>;
}

// ---------------------------------------------------------------- protos

const PROTO_DIR = path.dirname(require.resolve('otlp-protos/package.json'));
const SERVICE_FILES = ['trace', 'metrics', 'logs'].map(
  (s) => `opentelemetry/proto/collector/${s}/v1/${s}_service.proto`);

const TRACE_SERVICE = 'opentelemetry.proto.collector.trace.v1.TraceService';
const METRICS_SERVICE = 'opentelemetry.proto.collector.metrics.v1.MetricsService';
const LOGS_SERVICE = 'opentelemetry.proto.collector.logs.v1.LogsService';

// Explicit so the wire shapes below hold: 64-bit ints as decimal strings (times
// are nanoseconds since 1970, far past 2^53), bytes left as Buffers (turned into
// hex here), enums as numbers, absent scalars as their defaults, and the
// virtual `value`/`data` fields that name which member of a oneof is set.
const TO_OBJECT: protobuf.IConversionOptions = {
  longs: String, enums: Number, defaults: true, arrays: true, objects: true, oneofs: true,
};

let cachedRoot: protobuf.Root | undefined;

export function otlpRoot(): protobuf.Root {
  if (cachedRoot) return cachedRoot;
  const root = new protobuf.Root();
  // The protos import each other by paths relative to the package root.
  root.resolvePath = (_origin, target) => path.join(PROTO_DIR, target);
  root.loadSync(SERVICE_FILES);
  root.resolveAll();
  return (cachedRoot = root);
}

// ---------------------------------------------------------------- wire shapes
// What protobufjs' toObject gives with TO_OBJECT, for the fields read here.

interface WireAnyValue {
  value?: 'stringValue' | 'boolValue' | 'intValue' | 'doubleValue' | 'arrayValue' | 'kvlistValue' | 'bytesValue';
  stringValue?: string;
  boolValue?: boolean;
  intValue?: string;
  doubleValue?: number;
  arrayValue?: { values: WireAnyValue[] };
  kvlistValue?: { values: WireKeyValue[] };
  bytesValue?: Uint8Array;
}
interface WireKeyValue { key: string; value: WireAnyValue | null }
interface WireResource { attributes: WireKeyValue[] }
interface WireScope { name: string; version: string }
interface WireEvent { timeUnixNano: string; name: string; attributes: WireKeyValue[] }
interface WireLink { traceId: Uint8Array; spanId: Uint8Array; traceState: string; flags: number; attributes: WireKeyValue[] }
interface WireSpan {
  traceId: Uint8Array; spanId: Uint8Array; parentSpanId: Uint8Array; traceState: string; flags: number;
  name: string; kind: number; startTimeUnixNano: string; endTimeUnixNano: string;
  attributes: WireKeyValue[]; events: WireEvent[]; links: WireLink[];
  status: { code: number; message: string } | null;
}
interface WireTraceRequest {
  resourceSpans: { resource: WireResource | null; scopeSpans: { scope: WireScope | null; spans: WireSpan[] }[] }[];
}
interface WireNumberPoint {
  attributes: WireKeyValue[]; startTimeUnixNano: string; timeUnixNano: string;
  value?: 'asDouble' | 'asInt'; asDouble?: number; asInt?: string;
}
interface WireHistogramPoint {
  attributes: WireKeyValue[]; startTimeUnixNano: string; timeUnixNano: string;
  count: string; sum?: number; min?: number; max?: number; bucketCounts: string[]; explicitBounds: number[];
}
interface WireMetric {
  name: string; description: string; unit: string;
  data?: 'gauge' | 'sum' | 'histogram' | 'exponentialHistogram' | 'summary';
  gauge?: { dataPoints: WireNumberPoint[] };
  sum?: { dataPoints: WireNumberPoint[]; aggregationTemporality: number; isMonotonic: boolean };
  histogram?: { dataPoints: WireHistogramPoint[]; aggregationTemporality: number };
  exponentialHistogram?: { dataPoints: unknown[] };
  summary?: { dataPoints: unknown[] };
}
interface WireMetricsRequest {
  resourceMetrics: { resource: WireResource | null; scopeMetrics: { scope: WireScope | null; metrics: WireMetric[] }[] }[];
}

// ---------------------------------------------------------------- flattening

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

/** int64 as a number when that is exact, else a bigint, so no value is silently rounded. */
function intValue(s: string): number | bigint {
  const big = BigInt(s);
  const n = Number(big);
  return Number.isSafeInteger(n) ? n : big;
}

function anyValue(v: WireAnyValue | null): AttrValue {
  switch (v?.value) {
    case 'stringValue': return v.stringValue ?? '';
    case 'boolValue': return v.boolValue ?? false;
    case 'intValue': return intValue(v.intValue ?? '0');
    case 'doubleValue': return v.doubleValue ?? 0;
    case 'arrayValue': return (v.arrayValue?.values ?? []).map(anyValue);
    case 'kvlistValue': return attributes(v.kvlistValue?.values ?? []);
    case 'bytesValue': return Buffer.from(v.bytesValue ?? []);
    default: return null; // an AnyValue with nothing set is how OTLP sends null
  }
}

function attributes(kvs: WireKeyValue[]): Attributes {
  const out: Attributes = {};
  for (const kv of kvs) out[kv.key] = anyValue(kv.value);
  return out;
}

function spanKindName(kind: number): string {
  const kinds = otlpRoot().lookupEnum('opentelemetry.proto.trace.v1.Span.SpanKind');
  return kinds.valuesById[kind] ?? `UNKNOWN(${kind})`;
}

function flattenSpan(s: WireSpan, resource: Attributes, scope: WireScope | null): ReceivedSpan {
  return {
    resource, scopeName: scope?.name ?? '', scopeVersion: scope?.version ?? '',
    traceId: hex(s.traceId), spanId: hex(s.spanId), parentSpanId: hex(s.parentSpanId),
    traceState: s.traceState, flags: s.flags,
    name: s.name, kind: s.kind, kindName: spanKindName(s.kind),
    startTimeUnixNano: BigInt(s.startTimeUnixNano), endTimeUnixNano: BigInt(s.endTimeUnixNano),
    attributes: attributes(s.attributes),
    events: s.events.map((e) => ({ name: e.name, timeUnixNano: BigInt(e.timeUnixNano), attributes: attributes(e.attributes) })),
    links: s.links.map((l) => ({
      traceId: hex(l.traceId), spanId: hex(l.spanId), traceState: l.traceState, flags: l.flags, attributes: attributes(l.attributes),
    })),
    status: { code: s.status?.code ?? 0, message: s.status?.message ?? '' },
  };
}

function flattenTrace(req: WireTraceRequest): ReceivedSpan[] {
  return req.resourceSpans.flatMap((rs) => {
    const resource = attributes(rs.resource?.attributes ?? []);
    return rs.scopeSpans.flatMap((ss) => ss.spans.map((s) => flattenSpan(s, resource, ss.scope)));
  });
}

function numberPoint(p: WireNumberPoint): NumberPoint {
  const isInt = p.value === 'asInt';
  return {
    attributes: attributes(p.attributes),
    startTimeUnixNano: BigInt(p.startTimeUnixNano), timeUnixNano: BigInt(p.timeUnixNano),
    value: isInt ? Number(p.asInt ?? '0') : p.asDouble ?? 0,
    valueType: isInt ? 'int' : 'double',
  };
}

function histogramPoint(p: WireHistogramPoint): HistogramPoint {
  return {
    attributes: attributes(p.attributes),
    startTimeUnixNano: BigInt(p.startTimeUnixNano), timeUnixNano: BigInt(p.timeUnixNano),
    count: Number(p.count), sum: p.sum ?? null, min: p.min ?? null, max: p.max ?? null,
    bucketCounts: p.bucketCounts.map(Number), explicitBounds: p.explicitBounds,
  };
}

function flattenMetric(m: WireMetric, base: MetricBase): ReceivedMetric {
  if (m.data === 'gauge' && m.gauge) return { ...base, type: 'gauge', dataPoints: m.gauge.dataPoints.map(numberPoint) };
  if (m.data === 'sum' && m.sum) {
    return {
      ...base, type: 'sum', isMonotonic: m.sum.isMonotonic, aggregationTemporality: m.sum.aggregationTemporality,
      dataPoints: m.sum.dataPoints.map(numberPoint),
    };
  }
  if (m.data === 'histogram' && m.histogram) {
    return {
      ...base, type: 'histogram', aggregationTemporality: m.histogram.aggregationTemporality,
      dataPoints: m.histogram.dataPoints.map(histogramPoint),
    };
  }
  if (m.data === 'exponentialHistogram' || m.data === 'summary') {
    return { ...base, type: m.data, dataPoints: m[m.data]?.dataPoints ?? [] };
  }
  return { ...base, type: 'empty', dataPoints: [] };
}

function flattenMetrics(req: WireMetricsRequest): ReceivedMetric[] {
  return req.resourceMetrics.flatMap((rm) => {
    const resource = attributes(rm.resource?.attributes ?? []);
    return rm.scopeMetrics.flatMap((sm) => sm.metrics.map((m) => flattenMetric(m, {
      resource, scopeName: sm.scope?.name ?? '', scopeVersion: sm.scope?.version ?? '',
      name: m.name, description: m.description, unit: m.unit,
    })));
  });
}

// ---------------------------------------------------------------- server

type Signal = 'trace' | 'metrics' | 'logs';

/** Decodes one request body into whatever the receiver keeps from it. */
type Decoder = (body: Buffer) => void;

/**
 * A unary Export method on raw Buffers: decoding happens in the handler rather
 * than in grpc-js' deserializer so a body that does not decode is answered with
 * INVALID_ARGUMENT and a message naming the proto message, not a bare INTERNAL.
 */
function exportMethod(serviceName: string): grpc.ServiceDefinition {
  const service = otlpRoot().lookupService(serviceName);
  const method = service.methods['Export'];
  if (!method?.resolvedResponseType) throw new Error(`${serviceName}: no Export method in the protos`);
  const response = method.resolvedResponseType;
  const same = (b: Buffer): Buffer => b;
  return {
    Export: {
      path: `/${serviceName}/Export`, requestStream: false, responseStream: false,
      requestSerialize: same, requestDeserialize: same,
      responseSerialize: () => Buffer.from(response.encode(response.create({})).finish()),
      responseDeserialize: same,
    },
  };
}

/** Decodes the bytes of one ExportTraceServiceRequest as the receiver does. */
export function decodeTraceRequest(body: Uint8Array): ReceivedSpan[] {
  const type = requestType('opentelemetry.proto.collector.trace.v1.TraceService');
  return flattenTrace(type.toObject(type.decode(body), TO_OBJECT) as WireTraceRequest);
}

/** The resource of each ResourceSpans of one ExportTraceServiceRequest, in order, with its span count. */
export function traceRequestResources(body: Uint8Array): { resource: Attributes; spans: number }[] {
  const type = requestType('opentelemetry.proto.collector.trace.v1.TraceService');
  const req = type.toObject(type.decode(body), TO_OBJECT) as WireTraceRequest;
  return req.resourceSpans.map((rs) => ({
    resource: attributes(rs.resource?.attributes ?? []),
    spans: rs.scopeSpans.reduce((n, ss) => n + ss.spans.length, 0),
  }));
}

function requestType(serviceName: string): protobuf.Type {
  const t = otlpRoot().lookupService(serviceName).methods['Export']?.resolvedRequestType;
  if (!t) throw new Error(`${serviceName}: Export has no request type`);
  return t;
}

/** Pending waitFor* calls, re-checked after every stored export. */
class Waiters {
  private readonly pending = new Map<() => boolean, (why: string) => void>();

  /** Resolves with check()'s first defined result; rejects with describe()'s text after timeoutMs. */
  wait<T>(check: () => T | undefined, timeoutMs: number, describe: () => string): Promise<T> {
    const now = check();
    if (now !== undefined) return Promise.resolve(now);
    return new Promise<T>((resolve, reject) => {
      const finish = (): void => { clearTimeout(timer); this.pending.delete(poll); };
      const poll = (): boolean => {
        const got = check();
        if (got === undefined) return false;
        finish(); resolve(got);
        return true;
      };
      const timer = setTimeout(() => { finish(); reject(new Error(describe())); }, timeoutMs);
      this.pending.set(poll, (why) => { finish(); reject(new Error(why)); });
    });
  }

  notify(): void {
    for (const poll of [...this.pending.keys()]) poll();
  }

  rejectAll(why: string): void {
    for (const cancel of [...this.pending.values()]) cancel(why);
  }
}

class Receiver implements OtlpReceiver {
  readonly endpoint: string;
  private readonly received: { spans: ReceivedSpan[]; metrics: ReceivedMetric[] } = { spans: [], metrics: [] };
  private readonly arrivalNs: bigint[] = [];
  private readonly counts: RequestCounts = { trace: 0, metrics: 0, logs: 0, rejected: 0 };
  private readonly waiters = new Waiters();
  private readonly delayed = new Set<NodeJS.Timeout>();
  private failuresLeft: number;
  private closing: Promise<void> | undefined;

  constructor(private readonly server: grpc.Server, readonly port: number, private readonly opts: OtlpReceiverOptions) {
    this.endpoint = opts.tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`;
    this.failuresLeft = opts.failFirst ?? 0;
  }

  get requests(): RequestCounts { return { ...this.counts }; }
  spans(): ReceivedSpan[] { return [...this.received.spans]; }
  arrivals(): bigint[] { return [...this.arrivalNs]; }
  metrics(): ReceivedMetric[] { return [...this.received.metrics]; }

  waitForSpans(n: number, timeoutMs = 15_000): Promise<ReceivedSpan[]> {
    return this.waiters.wait(
      () => (this.received.spans.length >= n ? this.spans() : undefined), timeoutMs,
      () => `waitForSpans: wanted ${n} span(s) within ${timeoutMs} ms, ${this.received.spans.length} arrived `
        + `(${this.describeRequests()})`);
  }

  waitForMetric(name: string, timeoutMs = 15_000): Promise<ReceivedMetric> {
    return this.waiters.wait(
      () => this.received.metrics.findLast((m) => m.name === name), timeoutMs,
      () => `waitForMetric: no metric '${name}' within ${timeoutMs} ms; ${this.received.metrics.length} metric(s) `
        + `arrived [${[...new Set(this.received.metrics.map((m) => m.name))].join(', ')}] (${this.describeRequests()})`);
  }

  close(): Promise<void> {
    return (this.closing ??= this.shutdown());
  }

  /** The unary handler shared by the three services. */
  handler(signal: Signal, decode: Decoder): grpc.handleUnaryCall<Buffer, Buffer> {
    return (call, callback) => {
      this.counts[signal]++;
      // Decided on arrival, so failFirst counts calls in the order they came in.
      const fail = this.failuresLeft > 0;
      if (fail) { this.failuresLeft--; this.counts.rejected++; }
      this.later(() => {
        if (call.cancelled) return; // the client gave up (deadline): a collector would not have acked it
        if (fail) return callback({ code: this.opts.failWith ?? grpc.status.UNAVAILABLE, details: 'otlp-receiver: failFirst' });
        try {
          decode(call.request);
        } catch (err) {
          return callback({ code: grpc.status.INVALID_ARGUMENT, details: `otlp-receiver: ${String(err)}` });
        }
        callback(null, Buffer.alloc(0));
        this.waiters.notify();
      });
    };
  }

  storeSpans(spans: ReceivedSpan[]): void {
    const now = BigInt(Math.round((performance.timeOrigin + performance.now()) * 1e6));
    for (const span of spans) {
      this.received.spans.push(span);
      this.arrivalNs.push(now);
    }
  }
  storeMetrics(metrics: ReceivedMetric[]): void { this.received.metrics.push(...metrics); }

  private later(fn: () => void): void {
    const delayMs = this.opts.delayMs ?? 0;
    if (delayMs <= 0) return fn();
    const t = setTimeout(() => { this.delayed.delete(t); fn(); }, delayMs);
    this.delayed.add(t);
  }

  private describeRequests(): string {
    const c = this.counts;
    return `export calls: trace ${c.trace}, metrics ${c.metrics}, logs ${c.logs}, rejected ${c.rejected}`;
  }

  private async shutdown(): Promise<void> {
    this.waiters.rejectAll(`otlp-receiver on ${this.endpoint} closed`);
    for (const t of this.delayed) clearTimeout(t);
    this.delayed.clear();
    // Exporters keep their HTTP/2 sessions open; give a graceful shutdown a
    // moment, then cut them so close() never hangs a test run.
    await new Promise<void>((resolve) => {
      const force = setTimeout(() => { this.server.forceShutdown(); resolve(); }, 1000);
      this.server.tryShutdown(() => { clearTimeout(force); resolve(); });
    });
  }
}

function decoderFor<W>(serviceName: string, keep: (wire: W) => void): Decoder {
  const type = requestType(serviceName);
  return (body) => {
    let wire: W;
    try {
      wire = type.toObject(type.decode(body), TO_OBJECT) as W;
    } catch (err) {
      throw new Error(`cannot decode ${type.fullName.slice(1)}: ${(err as Error).message}`);
    }
    keep(wire);
  };
}

function bind(server: grpc.Server, tls: OtlpReceiverOptions['tls'], port = 0): Promise<number> {
  const creds = tls
    ? grpc.ServerCredentials.createSsl(tls.clientCa ?? null, [{ private_key: tls.key, cert_chain: tls.cert }], tls.clientCa !== undefined)
    : grpc.ServerCredentials.createInsecure();
  return new Promise((resolve, reject) => {
    server.bindAsync(`127.0.0.1:${port}`, creds,
      (err, port) => (err ? reject(err) : resolve(port)));
  });
}

/** Starts a receiver on an ephemeral port of 127.0.0.1 (or opts.port). */
export async function startOtlpReceiver(opts: OtlpReceiverOptions = {}): Promise<OtlpReceiver> {
  const server = new grpc.Server();
  const port = await bind(server, opts.tls, opts.port);
  const r = new Receiver(server, port, opts);
  server.addService(exportMethod(TRACE_SERVICE),
    { Export: r.handler('trace', decoderFor<WireTraceRequest>(TRACE_SERVICE, (w) => r.storeSpans(flattenTrace(w)))) });
  server.addService(exportMethod(METRICS_SERVICE),
    { Export: r.handler('metrics', decoderFor<WireMetricsRequest>(METRICS_SERVICE, (w) => r.storeMetrics(flattenMetrics(w)))) });
  // Logs are decoded (so a malformed body is still caught) and acknowledged, not kept.
  server.addService(exportMethod(LOGS_SERVICE),
    { Export: r.handler('logs', decoderFor<unknown>(LOGS_SERVICE, () => undefined)) });
  return r;
}
