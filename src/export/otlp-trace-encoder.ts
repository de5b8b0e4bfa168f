// SpanData straight to the protobuf bytes of an OTLP ExportTraceServiceRequest
// (opentelemetry/proto/collector/trace/v1), with no intermediate objects.
//
// The SDK's path builds a ReadableSpan, then an OTLP object tree (hex ids to bytes,
// attributes to KeyValue objects, times to strings or Longs), then protobufjs encodes
// it: about 8-9 µs and a few KB of garbage per connection span here. This writes each
// field once into one growing buffer. Values follow @opentelemetry/otlp-transformer,
// so a span reads the same either way: a whole number is an int_value, other numbers
// double_value; span flags carry the W3C flags plus HAS_IS_REMOTE, and IS_REMOTE for a
// server span's parent (the client span, on the other host).
import type { Resource } from '@opentelemetry/resources';
import type { InstrumentationScope } from '@opentelemetry/core';
import type { AttributeValue } from '../correlate/connection-record.js';
import type { HrTime, SpanData, SpanOwner } from '../correlate/span-data.js';
import { createResourceFor } from './owner-resource.js';

// Wire types
const VARINT = 0, I64 = 1, LEN = 2, I32 = 5;
const tag = (field: number, wire: number) => (field << 3) | wire;

// Span.kind: the SDK's SpanKind + 1
const KIND: Record<SpanData['kind'], number> = { internal: 1, server: 2, client: 3 };
// Status.code
const STATUS_ERROR = 2;
const FLAG_SAMPLED = 0x01, FLAG_HAS_IS_REMOTE = 0x100, FLAG_IS_REMOTE = 0x200;

// Encoded string fields by field number and string (see ProtoWriter.string).
const MAX_CACHED_STRINGS = 8192;
const MAX_CACHED_LENGTH = 64;
const FIELD_CACHE: Map<string, Uint8Array>[] = Array.from({ length: 6 }, () => new Map());

function encodeStringField(field: number, s: string): Uint8Array {
  const body = Buffer.from(s, 'utf8');
  const w = new ProtoWriter(body.length + 8);
  w.tag(field, LEN);
  w.varint(body.length);
  w.bytes(body);
  return Buffer.from(w.finish());
}

const HEX = new Uint8Array(128);
for (let i = 0; i < 10; i++) HEX[48 + i] = i;
for (let i = 0; i < 6; i++) { HEX[97 + i] = 10 + i; HEX[65 + i] = 10 + i; }

/** A protobuf writer over one buffer that grows; nested messages are length-prefixed in place. */
class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private _room(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.pos + n));
    this.buf.copy(next, 0, 0, this.pos);
    this.buf = next;
  }

  varint(v: number): void {
    this._room(10);
    const b = this.buf;
    if (v < 0) {
      // int64 two's complement: ten bytes
      let lo = v >>> 0, hi = Math.floor(v / 4294967296) >>> 0;
      for (let i = 0; i < 9; i++) {
        b[this.pos++] = (lo & 0x7f) | 0x80;
        lo = ((lo >>> 7) | (hi << 25)) >>> 0;
        hi >>>= 7;
      }
      b[this.pos++] = lo & 0x01;
      return;
    }
    while (v > 0x7f) {
      b[this.pos++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    b[this.pos++] = v;
  }

  tag(field: number, wire: number): void {
    this.varint(tag(field, wire));
  }

  /**
   * A string field. Attribute keys, event names and most values (addresses, states,
   * executable names) repeat from span to span: their encoded field is cached.
   */
  string(field: number, s: string): void {
    const cache = FIELD_CACHE[field]!;
    let enc = cache.get(s);
    if (enc === undefined) {
      enc = encodeStringField(field, s);
      if (s.length <= MAX_CACHED_LENGTH) {
        if (cache.size >= MAX_CACHED_STRINGS) cache.clear();
        cache.set(s, enc);
      }
    }
    this.bytes(enc);
  }

  hex(field: number, hex: string): void {
    const n = hex.length >> 1;
    this.tag(field, LEN);
    this.varint(n);
    this._room(n);
    const b = this.buf;
    for (let i = 0, p = this.pos; i < hex.length; i += 2) b[p++] = (HEX[hex.charCodeAt(i)]! << 4) | HEX[hex.charCodeAt(i + 1)]!;
    this.pos += n;
  }

  bytes(b: Uint8Array): void {
    const n = b.length;
    this._room(n);
    if (n > 24) {
      this.buf.set(b, this.pos);
    } else {
      const buf = this.buf;
      for (let i = 0, p = this.pos; i < n; i++) buf[p + i] = b[i]!;
    }
    this.pos += n;
  }

  fixed32(field: number, v: number): void {
    this.tag(field, I32);
    this._room(4);
    this.buf.writeUInt32LE(v >>> 0, this.pos);
    this.pos += 4;
  }

  double(field: number, v: number): void {
    this.tag(field, I64);
    this._room(8);
    this.buf.writeDoubleLE(v, this.pos);
    this.pos += 8;
  }

  /** fixed64 nanoseconds since the epoch from HrTime, exact without bigint. */
  time(field: number, t: HrTime): void {
    this._room(9);
    const b = this.buf;
    let p = this.pos;
    b[p++] = tag(field, I64); // fields 1, 7, 8: one byte
    // sec * 1e9 + ns = (sec * 1953125) * 512 + ns; sec * 1953125 < 2^53
    const a = t[0] * 1953125;
    const aHi = Math.floor(a / 4294967296), aLo = a - aHi * 4294967296;
    const low = aLo * 512 + t[1];
    const carry = Math.floor(low / 4294967296);
    const lo = low - carry * 4294967296, hi = (aHi * 512 + carry) >>> 0;
    b[p++] = lo & 0xff; b[p++] = (lo >>> 8) & 0xff; b[p++] = (lo >>> 16) & 0xff; b[p++] = lo >>> 24;
    b[p++] = hi & 0xff; b[p++] = (hi >>> 8) & 0xff; b[p++] = (hi >>> 16) & 0xff; b[p++] = hi >>> 24;
    this.pos = p;
  }

  /** Starts a length-delimited field; end() writes its length. One byte is kept for it. */
  begin(field: number): number {
    this.tag(field, LEN);
    this._room(1);
    return this.pos++;
  }

  end(at: number): void {
    const len = this.pos - at - 1;
    if (len < 0x80) {
      this.buf[at] = len;
      return;
    }
    // a longer message: move it to make room for its length's extra bytes
    let extra = 0;
    for (let v = len; v >= 0x80; v = Math.floor(v / 128)) extra++;
    this._room(extra);
    this.buf.copy(this.buf, at + 1 + extra, at + 1, this.pos);
    let v = len, p = at;
    while (v > 0x7f) {
      this.buf[p++] = (v % 128) | 0x80;
      v = Math.floor(v / 128);
    }
    this.buf[p] = v;
    this.pos += extra;
  }

  finish(): Uint8Array {
    return this.buf.subarray(0, this.pos);
  }
}

function varintSize(v: number): number {
  let n = 1;
  while (v >= 0x80) { v = Math.floor(v / 128); n++; }
  return n;
}

/** A KeyValue (field `field` of its parent): key, then AnyValue. */
function keyValue(w: ProtoWriter, field: number, key: string, value: AttributeValue): void {
  const kv = w.begin(field);
  w.string(1, key);
  const any = w.begin(2);
  switch (typeof value) {
    case 'string':
      w.string(1, value);
      break;
    case 'boolean':
      w.tag(2, VARINT);
      w.varint(value ? 1 : 0);
      break;
    default:
      if (Number.isInteger(value)) {
        w.tag(3, VARINT);
        w.varint(value);
      } else {
        w.double(4, value);
      }
  }
  w.end(any);
  w.end(kv);
}

// Encoded KeyValues of a key with a string or boolean value: most repeat from span to span
// (transport, network type, close reason, addresses, executable names).
// By field number (the KeyValue's field in its parent), key, value.
const KV_CACHE: Map<string, Map<string | boolean, Uint8Array>>[] = Array.from({ length: 10 }, () => new Map());
const MAX_KV_VALUES = 4096;

function cachedKeyValue(w: ProtoWriter, field: number, key: string, value: string | boolean): void {
  const byKey = KV_CACHE[field]!;
  let byValue = byKey.get(key);
  if (byValue === undefined) byKey.set(key, byValue = new Map());
  let enc = byValue.get(value);
  if (enc === undefined) {
    const one = new ProtoWriter(64);
    keyValue(one, field, key, value);
    enc = Buffer.from(one.finish());
    if (typeof value === 'string' && value.length > MAX_CACHED_LENGTH) {
      w.bytes(enc);
      return;
    }
    if (byValue.size >= MAX_KV_VALUES) byValue.clear();
    byValue.set(value, enc);
  }
  w.bytes(enc);
}

// Attribute maps shared by many spans (a state change's, frozen) are encoded once.
const SHARED_ATTRIBUTES = new WeakMap<object, Uint8Array>();

function attributes(w: ProtoWriter, field: number, attrs: Record<string, AttributeValue>): void {
  if (Object.isFrozen(attrs)) {
    let enc = SHARED_ATTRIBUTES.get(attrs);
    if (enc === undefined) {
      const one = new ProtoWriter(128);
      writeAttributes(one, field, attrs);
      SHARED_ATTRIBUTES.set(attrs, enc = Buffer.from(one.finish()));
    }
    w.bytes(enc);
    return;
  }
  writeAttributes(w, field, attrs);
}

function writeAttributes(w: ProtoWriter, field: number, attrs: Record<string, AttributeValue>): void {
  for (const key in attrs) {
    const v = attrs[key];
    if (v === undefined) continue;
    if (typeof v === 'number') keyValue(w, field, key, v);
    else cachedKeyValue(w, field, key, v);
  }
}

/**
 * Span.links (13) and Span.dropped_links_count (14). A link is a request's span, in another
 * process: flags carry its W3C flags with HAS_IS_REMOTE and IS_REMOTE, as the SDK writes them.
 */
function links(w: ProtoWriter, list: NonNullable<SpanData['links']>, dropped: number): void {
  for (const l of list) {
    const at = w.begin(13);
    w.hex(1, l.traceId);
    w.hex(2, l.spanId);
    w.fixed32(6, (l.flags & 0xff) | FLAG_HAS_IS_REMOTE | FLAG_IS_REMOTE);
    w.end(at);
  }
  if (dropped > 0) {
    w.tag(14, VARINT);
    w.varint(dropped);
  }
}

function span(w: ProtoWriter, s: SpanData): void {
  const at = w.begin(2); // ScopeSpans.spans
  w.hex(1, s.traceId);
  w.hex(2, s.spanId);
  if (s.traceState !== undefined) w.string(3, s.traceState);
  if (s.parentSpanId !== undefined) w.hex(4, s.parentSpanId);
  w.string(5, s.name);
  w.tag(6, VARINT);
  w.varint(KIND[s.kind]);
  w.time(7, s.startTime);
  w.time(8, s.endTime);
  attributes(w, 9, s.attributes);
  for (const e of s.events) {
    const ev = w.begin(11);
    w.time(1, e.time);
    w.string(2, e.name);
    attributes(w, 3, e.attributes);
    w.end(ev);
  }
  if (s.droppedEventsCount > 0) {
    w.tag(12, VARINT);
    w.varint(s.droppedEventsCount);
  }
  if (s.links !== undefined) links(w, s.links, s.droppedLinksCount ?? 0);
  const st = w.begin(15);
  if (s.status.code === 'error') {
    if (s.status.message !== undefined) w.string(2, s.status.message);
    w.tag(3, VARINT);
    w.varint(STATUS_ERROR);
  }
  w.end(st);
  // a server span's parent is the client end's span, maybe on another host; a checkpoint's is its own end's (local)
  w.fixed32(16, FLAG_SAMPLED | FLAG_HAS_IS_REMOTE | (s.parentSpanId !== undefined && s.kind === 'server' ? FLAG_IS_REMOTE : 0));
  w.end(at);
}

/** The Resource message of a resource, encoded once and reused for every request. */
function resourceMessage(resource: Resource): Uint8Array {
  const w = new ProtoWriter(512);
  const attrs = resource.attributes;
  for (const key of Object.keys(attrs)) {
    const v = attrs[key];
    if (typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean') keyValue(w, 1, key, v);
  }
  return Buffer.from(w.finish());
}

function scopeMessage(scope: InstrumentationScope): Uint8Array {
  const w = new ProtoWriter(128);
  w.string(1, scope.name);
  if (scope.version !== undefined) w.string(2, scope.version);
  return Buffer.from(w.finish());
}

/** One span's bytes (see TraceRequestEncoder.encodeSpan) and the owner whose resource it goes under. */
export interface EncodedSpan {
  readonly bytes: Uint8Array;
  /** SpanData.owner: undefined for tcpspan's own resource */
  readonly owner: SpanOwner | undefined;
}

export interface TraceRequestEncoder {
  /** One ExportTraceServiceRequest holding `spans`: one ResourceSpans per owner, in order of first appearance. */
  encode(spans: readonly SpanData[]): Uint8Array;
  /**
   * One span's bytes, as a field of ScopeSpans (tag and length included), written into a
   * shared slab, with its owner: a queue can hold these instead of span objects (≈ 0.6 KB
   * each, where a SpanData with its attributes and events is several KB of objects that live
   * long enough to cost the garbage collector).
   */
  encodeSpan(span: SpanData): EncodedSpan;
  /** The request holding spans encoded by encodeSpan(), in order within each owner's ResourceSpans. */
  encodeEncoded(spans: readonly EncodedSpan[]): Uint8Array;
}

/** Spans are written into slabs of this size; a slab is freed once none of its spans is held. */
const SLAB_BYTES = 256 * 1024;

/** Encoded Resource messages kept, by owner key; beyond, the cache starts over. */
const MAX_RESOURCE_MESSAGES = 1024;

/** Items grouped by owner key, each group in order, groups in order of first appearance. */
function byOwner<T>(items: readonly T[], ownerOf: (item: T) => SpanOwner | undefined): (readonly T[])[] {
  // the common case: every span under one resource
  const first = items.length > 0 ? ownerOf(items[0]!)?.key : undefined;
  let one = true;
  for (let i = 1; i < items.length && one; i++) one = ownerOf(items[i]!)?.key === first;
  if (one) return [items];
  const groups = new Map<string | undefined, T[]>();
  for (const item of items) {
    const key = ownerOf(item)?.key;
    const g = groups.get(key);
    if (g === undefined) groups.set(key, [item]);
    else g.push(item);
  }
  return [...groups.values()];
}

const ownerOfEncoded = (s: EncodedSpan): SpanOwner | undefined => s.owner;
const ownerOfSpan = (s: SpanData): SpanOwner | undefined => s.owner;

/**
 * An encoder for spans of one instrumentation scope under tcpspan's resource, or under that
 * resource with their owner's service.name, container.id and k8s.pod.uid for spans that have
 * one (owner-resource.ts).
 */
export function createTraceRequestEncoder(resource: Resource, scope: InstrumentationScope): TraceRequestEncoder {
  const resourceFor = createResourceFor(resource);
  const own = resourceMessage(resource);
  const messages = new Map<string, Uint8Array>();
  const resourceOf = (owner: SpanOwner | undefined): Uint8Array => {
    if (owner === undefined) return own;
    let m = messages.get(owner.key);
    if (m === undefined) {
      if (messages.size >= MAX_RESOURCE_MESSAGES) messages.clear();
      messages.set(owner.key, m = resourceMessage(resourceFor(owner)));
    }
    return m;
  };
  const scp = scopeMessage(scope);
  const schemaUrl = resource.schemaUrl;
  const schemaUrlField = schemaUrl ? 1 + varintSize(Buffer.byteLength(schemaUrl)) + Buffer.byteLength(schemaUrl) : 0;
  let hint = 64 * 1024;
  let slab = new ProtoWriter(SLAB_BYTES);
  // ExportTraceServiceRequest.resource_spans { resource; scope_spans { scope; spans... }; schema_url }
  const scopeSpansSize = (spansLength: number): number => 1 + varintSize(scp.length) + scp.length + spansLength;
  const resourceSpansSize = (res: Uint8Array, spansLength: number): number => {
    const scopeSpans = scopeSpansSize(spansLength);
    return 1 + varintSize(res.length) + res.length + 1 + varintSize(scopeSpans) + scopeSpans + schemaUrlField;
  };
  return {
    encodeSpan(s) {
      if (slab.buf.length - slab.pos < 16 * 1024) slab = new ProtoWriter(SLAB_BYTES);
      const from = slab.pos;
      span(slab, s);
      // a span that grew the slab moved it: the view is taken after writing
      return { bytes: slab.buf.subarray(from, slab.pos), owner: s.owner };
    },
    encodeEncoded(spans) {
      const groups = byOwner(spans, ownerOfEncoded);
      const sizes: number[] = new Array(groups.length);
      let total = 0;
      for (let g = 0; g < groups.length; g++) {
        if (groups[g]!.length === 0) continue;
        let n = 0;
        for (const s of groups[g]!) n += s.bytes.length;
        sizes[g] = n;
        const res = resourceOf(groups[g]![0]!.owner);
        total += 1 + varintSize(resourceSpansSize(res, n)) + resourceSpansSize(res, n);
      }
      const w = new ProtoWriter(Math.max(1, total));
      for (let g = 0; g < groups.length; g++) {
        const group = groups[g]!;
        if (group.length === 0) continue; // no spans: no ResourceSpans
        const res = resourceOf(group[0]!.owner);
        w.tag(1, LEN);
        w.varint(resourceSpansSize(res, sizes[g]!));
        w.tag(1, LEN);
        w.varint(res.length);
        w.bytes(res);
        w.tag(2, LEN);
        w.varint(scopeSpansSize(sizes[g]!));
        w.tag(1, LEN);
        w.varint(scp.length);
        w.bytes(scp);
        for (const s of group) w.bytes(s.bytes);
        if (schemaUrl) w.string(3, schemaUrl);
      }
      return w.finish();
    },
    encode(spans) {
      const w = new ProtoWriter(hint);
      for (const group of byOwner(spans, ownerOfSpan)) {
        if (group.length === 0) continue;
        const res = resourceOf(group[0]!.owner);
        const rs = w.begin(1); // ExportTraceServiceRequest.resource_spans
        w.tag(1, LEN); // ResourceSpans.resource
        w.varint(res.length);
        w.bytes(res);
        const ss = w.begin(2); // ResourceSpans.scope_spans
        w.tag(1, LEN); // ScopeSpans.scope
        w.varint(scp.length);
        w.bytes(scp);
        for (const s of group) span(w, s);
        w.end(ss);
        if (schemaUrl) w.string(3, schemaUrl);
        w.end(rs);
      }
      const out = w.finish();
      hint = Math.max(hint, out.length + 1024);
      return out;
    },
  };
}
