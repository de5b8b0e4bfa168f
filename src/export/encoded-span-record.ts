// An encoded span (its protobuf bytes and its owner) as a spool record's payload, and back:
//   u8 flags (1: service.name, 2: container.id, 4: k8s.pod.uid present)
//   for each present, in that order: u16 length, UTF-8 bytes
//   the span's bytes (a ScopeSpans.spans field, as otlp-trace-encoder.ts wrote it)
// The owner's fields are what its resource is built from (owner-resource.ts), so a span read back
// goes out under the resource it would have gone under, in this run or the next.
import type { SpanOwner } from '../correlate/span-data.js';
import { createSpanOwners } from '../attribute/span-owner.js';
import type { EncodedSpan } from './otlp-trace-encoder.js';
import type { SpoolCodec } from './span-spool.js';

const SERVICE = 1, CONTAINER = 2, POD = 4;
/** Owner headers kept encoded, by owner key; beyond, the cache starts over. */
const MAX_CACHED = 1024;

function ownerHeader(owner: SpanOwner | undefined): Buffer {
  const fields: [number, string | undefined][] = [[SERVICE, owner?.serviceName], [CONTAINER, owner?.containerId], [POD, owner?.podUid]];
  let flags = 0;
  const parts: Buffer[] = [];
  for (const [bit, value] of fields) {
    if (value === undefined) continue;
    flags |= bit;
    const text = Buffer.from(value, 'utf8').subarray(0, 0xffff);
    const len = Buffer.allocUnsafe(2);
    len.writeUInt16LE(text.length);
    parts.push(len, text);
  }
  return Buffer.concat([Buffer.from([flags]), ...parts]);
}

export function createEncodedSpanCodec(): SpoolCodec<EncodedSpan> {
  const headers = new Map<string, Buffer>();
  const noOwner = ownerHeader(undefined);
  const owners = createSpanOwners();
  const header = (owner: SpanOwner | undefined): Buffer => {
    if (owner === undefined) return noOwner;
    let h = headers.get(owner.key);
    if (h === undefined) {
      if (headers.size >= MAX_CACHED) headers.clear();
      headers.set(owner.key, h = ownerHeader(owner));
    }
    return h;
  };
  return {
    size: (s) => header(s.owner).length + s.bytes.length,
    write(s, buf, off) {
      const h = header(s.owner);
      h.copy(buf, off);
      buf.set(s.bytes, off + h.length);
    },
    read(payload) {
      const flags = payload[0];
      if (flags === undefined || flags > 7) throw new Error('not an encoded span record');
      let p = 1;
      const field = (bit: number): string | undefined => {
        if ((flags & bit) === 0) return undefined;
        if (p + 2 > payload.length) throw new Error('owner field past the record end');
        const len = payload.readUInt16LE(p);
        if (p + 2 + len > payload.length) throw new Error('owner field past the record end');
        const v = payload.toString('utf8', p + 2, p + 2 + len);
        p += 2 + len;
        return v;
      };
      const service = field(SERVICE), container = field(CONTAINER), pod = field(POD);
      if (p >= payload.length) throw new Error('no span bytes');
      return { bytes: payload.subarray(p), owner: owners.of(service, container, pod) };
    },
  };
}
