import assert from 'node:assert/strict';
import type { ConnectionRecord } from '../src/correlate/connection-record.js';
import type { SpanOwner } from '../src/correlate/span-data.js';
import { formatConsoleLine } from '../src/export/console-line.js';
import { createSpanOwners } from '../src/attribute/span-owner.js';

const REC: ConnectionRecord = {
  cookie: 5, kind: 'client', family: 'ipv4', localAddress: '10.0.0.1', localPort: 40000, peerAddress: '10.0.0.2', peerPort: 80,
  netns: 1, startNs: 1e12, endNs: 1e12 + 1.5e6, handshakeNs: 50_000, closeReason: 'fin', closeInitiator: 'local',
  errno: 0, errorName: undefined, retransmits: 0, retransmitsFailed: 0, rtt: { samples: 3, minUs: 20, avgUs: 30, maxUs: 40 },
  srttUs: 30, bytesSent: 5, bytesReceived: 3, segmentsSent: 5, segmentsReceived: 5, pid: 123, executableName: 'curl',
  openBeforeStart: false, kernelEventsLost: false, evicted: false, traceId: 'a'.repeat(32), spanId: 'b'.repeat(16),
  parentSpanId: undefined, events: [], droppedEvents: 0, cgroupId: 0, containerId: undefined, podUid: undefined,
};

describe('formatConsoleLine', () => {
  const owners = createSpanOwners();
  const line = (owner?: SpanOwner) => formatConsoleLine(REC, 0, owner).replace(/^\S+ /, ''); // the clock is local time
  const plain = 'client 123     curl            10.0.0.1:40000 -> 10.0.0.2:80                     1.50   0.05       30    0        5        3 fin(local)';
  const cid = `0123456789ab${'c'.repeat(52)}`;

  it('should end with the service the process named, quoted when it could break the columns', () => {
    assert.equal(line(), plain);
    assert.equal(line(owners.of('checkout', undefined, undefined)), `${plain} service=checkout`);
    assert.equal(line(owners.of('shop client\n', undefined, undefined)), `${plain} service="shop client\\n"`);
  });

  it('should end with the container\'s first 12 hex digits, after the service', () => {
    assert.equal(line(owners.of(undefined, cid, undefined)), `${plain} container=0123456789ab`);
    assert.equal(line(owners.of('checkout', cid, '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f')), `${plain} service=checkout container=0123456789ab`);
    // a pod alone: nothing on the line (the uid is on the span's resource)
    assert.equal(line(owners.of(undefined, undefined, '5e2b1f6c-0d3a-4b8e-9c7f-1a2b3c4d5e6f')), plain);
  });
});
