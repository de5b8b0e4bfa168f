// The span's attribute names are written as literals in span-data.ts (for speed): each must be
// the value of a semantic-convention constant, stable or tcpspan's own (semconv.ts).
import assert from 'node:assert/strict';
import * as stable from '@opentelemetry/semantic-conventions';
import * as sc from '../src/correlate/semconv.js';
import { epochOffset, toSpanData } from '../src/correlate/span-data.js';
import type { ConnectionRecord } from '../src/correlate/connection-record.js';

describe('toSpanData attribute names', () => {
  it('should use only names that semantic-convention constants define', () => {
    const rec: ConnectionRecord = {
      cookie: 5, kind: 'client', family: 'ipv4', localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80,
      netns: 1, startNs: 1e12, endNs: 1e12 + 1e6, handshakeNs: 50_000, closeReason: 'reset_received', closeInitiator: 'peer',
      errno: 104, errorName: 'ECONNRESET', retransmits: 1, retransmitsFailed: 1, rtt: { samples: 3, minUs: 20, avgUs: 30, maxUs: 40 },
      srttUs: 30, bytesSent: 5, bytesReceived: 3, segmentsSent: 5, segmentsReceived: 5, pid: 123, executableName: 'curl',
      cgroupId: 7, containerId: 'c'.repeat(64), podUid: '0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0',
      openBeforeStart: true, kernelEventsLost: true, evicted: true, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16),
      parentSpanId: undefined, events: [], droppedEvents: 0,
    };
    const names = Object.keys(toSpanData(rec, epochOffset((m) => m + 1.7e18)).attributes);
    assert.equal(names.length, 28, 'every optional attribute is present in this record');
    // the cgroup's ids are the owner's, on the resource (export/owner-resource.ts)
    assert.deepEqual(names.filter((n) => n === sc.ATTR_CONTAINER_ID || n === sc.ATTR_K8S_POD_UID), []);
    const known = new Set([...Object.entries(stable), ...Object.entries(sc)]
      .filter(([k, v]) => k.startsWith('ATTR_') && typeof v === 'string').map(([, v]) => v as string));
    assert.deepEqual(names.filter((n) => !known.has(n)), []);
  });
});
