import assert from 'node:assert/strict';
import { createPortScanDetector, SMALL_PORTS } from '../src/detect/port-scan.js';

const MS = 1e6;
const opts = { ports: 20, windowMs: 10_000, maxPeers: 4 };

describe('PortScanDetector', () => {
  describe('a scanning peer', () => {
    it('should report one scan per peer and window, when the window closes, with its evidence', () => {
      const d = createPortScanDetector(opts);
      for (let i = 0; i < 40; i++) d.observe(7, 'ipv4', '10.0.0.9', 1000 + i, i % 4 === 0 ? 'unanswered' : 'refused', (100 + i) * MS);
      d.observe(7, 'ipv4', '10.0.0.9', 1005, 'refused', 200 * MS); // a port seen again: counted, not distinct
      assert.deepEqual(d.tick(9_000 * MS), []);
      assert.deepEqual(d.tick(10_101 * MS), [{
        netns: 7, family: 'ipv4', address: '10.0.0.9', ports: 40, refused: 31, unanswered: 10, lowPort: 1000, highPort: 1039,
        startNs: 100 * MS, endNs: 200 * MS,
      }]);
      assert.deepEqual(d.tick(30_000 * MS), []);
      assert.deepEqual(d.stats(), { peers: 0, evicted: 0, detections: 1 });
    });

    it('should start a new window after the first closes, and count distinct ports past the small set exactly', () => {
      const d = createPortScanDetector(opts);
      for (let i = 0; i < 3 * SMALL_PORTS; i++) d.observe(1, 'ipv6', 'fd00::1', 60000 + (i % (2 * SMALL_PORTS)), 'refused', i * MS);
      d.observe(1, 'ipv6', 'fd00::1', 5, 'refused', 11_000 * MS); // the next window
      const [first] = d.tick(11_000 * MS);
      assert.equal(first!.ports, 2 * SMALL_PORTS);
      assert.equal(first!.refused, 3 * SMALL_PORTS);
      assert.deepEqual(d.flush(), []); // one port in the second window: no scan
    });
  });

  describe('ordinary traffic', () => {
    it('should report nothing at the threshold or below, nor for many peers with few ports each', () => {
      const d = createPortScanDetector({ ...opts, maxPeers: 1000 });
      for (let i = 0; i < 20; i++) d.observe(1, 'ipv4', '10.0.0.1', 80 + i, 'refused', i * MS);
      for (let p = 0; p < 500; p++) for (let i = 0; i < 3; i++) d.observe(1, 'ipv4', `10.1.${p >> 8}.${p & 255}`, 443 + i, 'unanswered', p * MS);
      assert.deepEqual(d.tick(20_000 * MS), []);
      assert.equal(d.stats().detections, 0);
    });
  });

  describe('memory', () => {
    it('should keep at most maxPeers, evicting the oldest window (counted) and reporting an evicted scan at once', () => {
      const d = createPortScanDetector(opts);
      for (let i = 0; i < 25; i++) d.observe(1, 'ipv4', '10.9.9.9', i + 1, 'refused', MS);
      for (let p = 0; p < 6; p++) d.observe(1, 'ipv4', `10.0.0.${p}`, 80, 'refused', (2 + p) * MS);
      assert.deepEqual(d.stats(), { peers: 4, evicted: 2, detections: 1 });
      const [scan] = d.tick(2 * MS);
      assert.equal(scan!.address, '10.9.9.9');
      assert.equal(scan!.ports, 25);
    });
  });
});
