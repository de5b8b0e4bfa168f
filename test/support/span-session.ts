// Runs the real pipeline in-process for a test (capture -> bridge -> attribution) and keeps
// every span it makes, with the record it came from.
import { openCapture } from '../../src/capture/probes.js';
import { NO_FILTER, type FilterSpec } from '../../src/capture/filter.js';
import { createBridge, type BridgeSummary } from '../../src/pipeline/bridge.js';
import { createClock } from '../../src/decode/format.js';
import type { Attributor } from '../../src/attribute/cgroup-attribution.js';
import type { ConnectionRecord } from '../../src/correlate/connection-record.js';
import type { SpanData } from '../../src/correlate/span-data.js';

export interface SpanSession {
  readonly spans: { rec: ConnectionRecord; span: SpanData }[];
  waitFor(pred: (spans: SpanSession['spans']) => boolean, timeoutMs?: number, what?: string): Promise<void>;
  /** Stops the bridge (idempotent); its summary. */
  stop(): Promise<BridgeSummary>;
}

export function startSpanSession(filter: Partial<FilterSpec>, attributor?: Attributor): SpanSession {
  const capture = openCapture({ filter: { ...NO_FILTER, ...filter }, ringBytes: 8 << 20, synTiming: true });
  const spans: SpanSession['spans'] = [];
  const bridge = createBridge({
    capture, clock: createClock(),
    correlator: { maxConnections: 1024, maxEventsPerSpan: 128, lingerMs: 20, maxPendingSynAcks: 64 },
    sinks: [{
      name: 'memory',
      accept: (rec, span) => { spans.push({ rec, span }); },
      shutdown: async () => undefined,
      exported: () => spans.length,
      dropped: () => ({}),
    }],
    ...(attributor && { attributor }),
  });
  bridge.start();
  return {
    spans,
    async waitFor(pred, timeoutMs = 15_000, what = 'spans') {
      const deadline = Date.now() + timeoutMs;
      while (!pred(spans)) {
        if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (${spans.length} spans seen)`);
        await new Promise((r) => setTimeout(r, 10));
      }
    },
    stop: () => bridge.stop(1000),
  };
}
