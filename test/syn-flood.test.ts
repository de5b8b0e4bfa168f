import assert from 'node:assert/strict';
import { createSynFloodDetector, type SynFloodInput } from '../src/detect/syn-flood.js';
import type { ListenStat } from '../src/capture/listen-stats.js';

const S = 1e9;
const opts = { halfOpen: 100, queueFullPerSecond: 50, windowMs: 3000 };

/** One listener's cumulative counts at second t, fed the way the detector reads them. */
function reading(t: number, stat: Partial<ListenStat>, extra: Partial<SynFloodInput> = {}): SynFloodInput {
  return {
    nowNs: t * S,
    ports: [{ netns: 5, port: 80, syns: 0, queueFull: 0, acceptFull: 0, synackRetransmits: 0, halfOpen: 0, halfOpenPeak: 0, backlog: 128, seenNs: t * S, ...stat }],
    sources: [], cookiesSent: new Map([[5, 0]]), ...extra,
  };
}

describe('SynFloodDetector', () => {
  describe('an episode', () => {
    it('should report one flood per episode, however long, when it has been quiet for the window', () => {
      const d = createSynFloodDetector(opts);
      let syns = 0, full = 0;
      const out = [];
      for (let t = 0; t <= 40; t++) {
        const flooding = t >= 2 && t < 30;
        if (flooding) { syns += 1000; full += 900; }
        out.push(...d.update(reading(t, { syns, queueFull: full, halfOpen: flooding ? 129 : 0, halfOpenPeak: flooding ? 129 : 0 }, {
          sources: flooding ? [{ netns: 5, port: 80, address: '10.0.0.1', syns: t * 10 }, { netns: 5, port: 80, address: '10.0.0.2', syns: t * 30 }] : [],
          cookiesSent: new Map([[5, full]]),
        })));
      }
      assert.equal(out.length, 1);
      assert.deepEqual(out[0], {
        // the first hot interval began at 1 s: its SYNs came between 1 s and 2 s
        netns: 5, port: 80, startNs: 1 * S, endNs: 29 * S, halfOpenPeak: 129, backlog: 128, syns: 28_000, synsPerSecondPeak: 1000,
        queueFull: 25_200, acceptFull: 0, synackRetransmits: 0, netnsCookiesSent: 25_200,
        topSources: [{ address: '10.0.0.2', syns: 870 }, { address: '10.0.0.1', syns: 290 }], ongoing: false,
      });
      assert.equal(d.detections(), 1);
    });

    it('should report an episode still running at shutdown as ongoing', () => {
      const d = createSynFloodDetector(opts);
      for (let t = 0; t <= 6; t++) d.update(reading(t, { halfOpen: 500, halfOpenPeak: 500 }));
      const [f] = d.flush();
      assert.equal(f!.ongoing, true);
      assert.equal(f!.halfOpenPeak, 500);
    });
  });

  describe('ordinary load', () => {
    it('should report nothing for pressure shorter than the window, nor for busy listeners without pressure', () => {
      const d = createSynFloodDetector(opts);
      let syns = 0, full = 0;
      const out = [];
      for (let t = 0; t <= 30; t++) {
        syns += 5000; // busy, but the queue never fills
        if (t % 10 === 5 || t % 10 === 6) full += 200; // two-second bursts
        out.push(...d.update(reading(t, { syns, queueFull: full, halfOpen: 20, halfOpenPeak: 40 })));
      }
      out.push(...d.flush());
      assert.deepEqual(out, []);
    });

    it('should not count a stale half-open reading (none of this interval) as pressure', () => {
      const d = createSynFloodDetector(opts);
      const out = [];
      for (let t = 0; t <= 10; t++) out.push(...d.update(reading(t, { halfOpen: 500, halfOpenPeak: 500, seenNs: 0 })));
      assert.deepEqual([...out, ...d.flush()], []);
    });
  });
});
