import assert from 'node:assert/strict';
import { counterName, shutdownLine } from '../src/cli/shutdown-line.js';
import type { BridgeSummary } from '../src/pipeline/bridge.js';

const counters = { submitted: 10, ringbufFull: 0, sockMapFull: 0, synMapFull: 0, recursionMisses: 0 };
const quiet: BridgeSummary = { kernelEvents: 10, kernelCounters: counters, lostEvents: {}, spans: 2, exported: { otlp: 2 }, dropped: {}, correlatorDrops: {}, attributionMisses: {}, closesLost: 0 };

describe('shutdownLine', () => {
  it('should show every kernel counter by name, zero or not, and none of the drops when nothing was lost', () => {
    assert.equal(shutdownLine(quiet, counters),
      'stopped: 10 kernel events, 2 spans (otlp 2); kernel counters: submitted 10, ringbuf_full 0, sock_map_full 0, syn_map_full 0, recursion_misses 0; ' +
      'lost kernel events 0; correlator drops: none; spans dropped: none');
  });

  it('should show every loss and every non-zero drop with its reason', () => {
    const summary: BridgeSummary = {
      kernelEvents: 90, kernelCounters: counters, lostEvents: { ringbuf_full: 7, in_transit: 3 }, spans: 20, exported: { otlp: 15, file: 20 },
      dropped: { 'otlp:queue_full': 5 }, correlatorDrops: { closed_socket: 2, evicted: 0, no_socket: 1 },
      attributionMisses: { not_found: 3, rescan_wait: 0 }, closesLost: 4,
    };
    assert.equal(shutdownLine(summary, { submitted: 100, ringbufFull: 7, sockMapFull: 4, synMapFull: 1, recursionMisses: 2 }),
      'stopped: 90 kernel events, 20 spans (otlp 15, file 20); kernel counters: submitted 100, ringbuf_full 7, sock_map_full 4, syn_map_full 1, recursion_misses 2; ' +
      'lost kernel events 10 (ringbuf_full 7, in_transit 3); correlator drops: closed_socket 2, no_socket 1; spans dropped: otlp:queue_full 5; ' +
      'cgroup lookups missed: not_found 3; ends whose close was lost: 4');
  });

  it('should show failed service lookups when attribution runs, none or by reason', () => {
    assert.match(shutdownLine({ ...quiet, serviceLookupsFailed: {} }, counters), /; correlator drops: none; service lookups failed: none; spans dropped: none$/);
    assert.match(shutdownLine({ ...quiet, serviceLookupsFailed: { gone: 3, denied: 1 } }, counters), /; service lookups failed: gone 3, denied 1; spans dropped: none$/);
  });

  it('should show the ends sampling left out beside the spans, not among the drops', () => {
    assert.equal(shutdownLine({ ...quiet, spans: 2000, sampledOut: 1790, exported: { otlp: 210 } }, counters),
      'stopped: 10 kernel events, 2000 spans, 1790 sampled out (otlp 210); kernel counters: submitted 10, ringbuf_full 0, sock_map_full 0, syn_map_full 0, recursion_misses 0; ' +
      'lost kernel events 0; correlator drops: none; spans dropped: none');
    assert.match(shutdownLine({ ...quiet, sampledOut: 0 }, counters), /^stopped: 10 kernel events, 2 spans, 0 sampled out \(otlp 2\);/);
  });

  it('should show, with a spool, what it took, what an earlier run left and what is left for the next run', () => {
    const summary: BridgeSummary = {
      ...quiet, spans: 40, exported: { otlp: 52 }, dropped: { 'otlp:spool_corrupt': 1 },
      spool: { otlp: { spooled: 40, replayed: 13, spans: 0, bytes: 0 } },
    };
    // found at start 13 + made 40 = delivered 52 + dropped 1 + left 0
    assert.match(shutdownLine(summary, counters),
      /; spans dropped: otlp:spool_corrupt 1; spool otlp: 40 written, 13 found at start, 0 left \(0 bytes\)$/);
  });

  it('should show a counter it has never heard of', () => {
    assert.match(shutdownLine(quiet, { ...counters, rareEventsTruncated: 5, late_close: 1 }),
      /kernel counters: submitted 10, ringbuf_full 0, sock_map_full 0, syn_map_full 0, recursion_misses 0, rare_events_truncated 5, late_close 1;/);
  });

  it('should name counters in snake_case', () => {
    assert.deepEqual(['ringbufFull', 'sock_map_full', 'submitted'].map(counterName), ['ringbuf_full', 'sock_map_full', 'submitted']);
  });
});
