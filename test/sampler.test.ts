import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CloseReason } from '../src/correlate/connection-record.js';
import { traceIdentityFromIsn } from '../src/correlate/trace-id.js';
import {
  createSampler, keepReason, keepReasonOpen, randomnessReaches, rejectionThreshold, samplingRule, splitThreshold, thValue, type SampledEnd,
} from '../src/pipeline/sampler.js';

const ECONNREFUSED = 111, ETIMEDOUT = 110, ECONNRESET = 104, EHOSTUNREACH = 113;

/** A healthy end (orderly close, no retransmit, a 50 µs handshake) with a random trace id. */
function end(over: Partial<SampledEnd> = {}): SampledEnd {
  return { traceId: randomBytes(16).toString('hex'), closeReason: 'fin', errno: 0, retransmits: 0, retransmitsFailed: 0, handshakeNs: 50_000, ...over };
}

/** A trace id whose randomness (its last 14 hex digits) is `r`. */
function withRandomness(r: bigint, head = '4bf92f3577b34da6a3'): string {
  return head + r.toString(16).padStart(14, '0');
}

/** The rule as the specification writes it, with bigints: R = low 56 bits of the trace id, keep when R >= T. */
function reference(traceId: string, ratio: number): boolean {
  return BigInt(`0x${traceId.slice(-14)}`) >= rejectionThreshold(ratio);
}

describe('sampler', () => {
  describe('rejectionThreshold and thValue', () => {
    it('should give (1 - ratio) * 2^56 exactly, written as tracestate th values', () => {
      const th = (ratio: number) => thValue(rejectionThreshold(ratio));
      // the specification's table: 1 -> 0, 1/2 -> 8, 1/4 -> c, 1/8 -> e, 1/16 -> f
      assert.deepEqual([1, 0.5, 0.25, 0.125, 0.0625].map(th), ['0', '8', 'c', 'e', 'f']);
      // 0.1 and 0.01 at the full 56 bits (the table's 4-digit forms are e666 and fd71)
      assert.equal(rejectionThreshold(0.1), 64851834634135142n);
      assert.equal(th(0.1), 'e6666666666666');
      assert.equal(th(0.01), 'fd70a3d70a3d71');
      // leading zeros are digits: 15/16 keeps all but the first sixteenth
      assert.equal(th(15 / 16), '1');
      // the smallest probability the scheme expresses, and anything below it
      assert.equal(th(2 ** -56), 'ffffffffffffff');
      assert.equal(th(1e-30), 'ffffffffffffff');
    });

    it('should make ratio 0 unreachable and refuse ratios outside 0..1', () => {
      assert.equal(rejectionThreshold(0), 1n << 56n);
      assert.throws(() => thValue(1n << 56n), RangeError);
      for (const bad of [-0.1, 1.01, NaN, Infinity]) assert.throws(() => rejectionThreshold(bad), RangeError, String(bad));
    });
  });

  describe('randomnessReaches', () => {
    it('should keep a trace id whose low 56 bits reach the threshold, and only those, whatever its high bits', () => {
      const t = rejectionThreshold(0.1);
      const split = splitThreshold(t);
      for (const head of ['000000000000000000', 'ffffffffffffffffff', '4bf92f3577b34da6a3']) {
        assert.equal(randomnessReaches(withRandomness(t, head), split), true, `R = T, head ${head}`);
        assert.equal(randomnessReaches(withRandomness(t - 1n, head), split), false, `R = T - 1, head ${head}`);
        assert.equal(randomnessReaches(withRandomness((1n << 56n) - 1n, head), split), true, 'R = 2^56 - 1');
        assert.equal(randomnessReaches(withRandomness(0n, head), split), false, 'R = 0');
      }
      // the borders between the 24 high and 32 low bits of R
      const hi = (1n << 32n) * 0xe66666n;
      const at = splitThreshold(hi);
      assert.equal(randomnessReaches(withRandomness(hi), at), true);
      assert.equal(randomnessReaches(withRandomness(hi - 1n), at), false);
      assert.equal(randomnessReaches(withRandomness(hi + 0xffffffffn), at), true);
    });

    it('should decide as the specification\'s rule computed with bigints, for 20,000 random trace ids and several ratios', () => {
      for (const ratio of [0, 2 ** -56, 0.001, 0.1, 0.5, 0.9, 1 - 2 ** -40, 1]) {
        const split = splitThreshold(rejectionThreshold(ratio));
        for (let i = 0; i < 2500; i++) {
          const id = randomBytes(16).toString('hex');
          assert.equal(randomnessReaches(id, split), reference(id, ratio), `${id} at ${ratio}`);
        }
      }
    });
  });

  describe('keepReason', () => {
    const none = samplingRule({ ratio: 0, keepSlowerThanMs: 200 });

    it('should keep every end with status ERROR, whatever the ratio', () => {
      const errors: [CloseReason, number][] = [['refused', ECONNREFUSED], ['timeout', ETIMEDOUT], ['reset_received', ECONNRESET],
        ['reset_sent', 0], ['reset_sent', ECONNRESET], ['aborted', EHOSTUNREACH]];
      for (const [closeReason, errno] of errors) assert.equal(keepReason(end({ closeReason, errno }), none), 'error', `${closeReason} ${errno}`);
    });

    it('should leave to the ratio the ends whose status is not ERROR', () => {
      for (const closeReason of ['fin', 'incomplete', 'aborted'] as const) assert.equal(keepReason(end({ closeReason }), none), undefined, closeReason);
    });

    it('should keep every end that retransmitted, or tried to', () => {
      assert.equal(keepReason(end({ retransmits: 1 }), none), 'retransmit');
      assert.equal(keepReason(end({ retransmitsFailed: 1 }), none), 'retransmit');
      // an error with retransmits is named by the first rule that holds
      assert.equal(keepReason(end({ retransmits: 3, closeReason: 'timeout', errno: ETIMEDOUT }), none), 'error');
    });

    it('should keep a handshake slower than keepSlowerThanMs, and none when the rule is off', () => {
      assert.equal(keepReason(end({ handshakeNs: 200_000_001 }), none), 'slow_handshake');
      assert.equal(keepReason(end({ handshakeNs: 200_000_000 }), none), undefined, 'exactly the bound is not slower');
      assert.equal(keepReason(end({ handshakeNs: undefined }), none), undefined, 'no handshake seen');
      const off = samplingRule({ ratio: 0, keepSlowerThanMs: 0 });
      assert.equal(keepReason(end({ handshakeNs: 30e9 }), off), undefined);
    });

    it('should keep every healthy end at ratio 1 and none at ratio 0', () => {
      const all = samplingRule({ ratio: 1, keepSlowerThanMs: 200 });
      for (let i = 0; i < 1000; i++) {
        const e = end();
        assert.equal(keepReason(e, all), 'ratio', e.traceId);
        assert.equal(keepReason(e, none), undefined, e.traceId);
      }
      // an all-0xff randomness is the largest there is, and still below 2^56
      assert.equal(keepReason(end({ traceId: 'f'.repeat(32) }), none), undefined);
    });
  });

  describe('keepReasonOpen (checkpoints of open ends)', () => {
    it('should follow the ratio of the trace, and the rules an open end already shows, so its final span is kept too', () => {
      const half = samplingRule({ ratio: 0.5, keepSlowerThanMs: 200 });
      for (let i = 0; i < 200; i++) {
        const e = end();
        const open = { traceId: e.traceId, retransmits: 0, handshakeNs: e.handshakeNs };
        assert.equal(keepReasonOpen(open, half), keepReason(e, half), e.traceId);
        // each rule an open end shows holds at its close too (its counts only grow)
        for (const o of [{ ...open, retransmits: 2 }, { ...open, handshakeNs: 300e6 }]) {
          const reason = keepReasonOpen(o, half);
          assert.ok(reason !== undefined && reason !== 'ratio');
          assert.equal(keepReason({ ...e, ...o }, half), reason);
        }
      }
    });
  });

  describe('createSampler', () => {
    it('should decide the same for both ends of a connection, and on another host, from the trace id alone', () => {
      const host1 = createSampler({ ratio: 0.3, keepSlowerThanMs: 200 });
      const host2 = createSampler({ ratio: 0.3, keepSlowerThanMs: 200 });
      let kept = 0;
      for (let i = 0; i < 2000; i++) {
        const clientIsn = randomBytes(4).readUInt32BE(), serverIsn = randomBytes(4).readUInt32BE();
        // each end computes the identity on its own (as the two hosts do), with different measurements
        const client = end({ traceId: traceIdentityFromIsn(clientIsn, serverIsn).traceId, handshakeNs: 80_000 });
        const server = end({ traceId: traceIdentityFromIsn(clientIsn, serverIsn).traceId, handshakeNs: 30_000, closeReason: 'fin' });
        const a = host1.decide(client), b = host2.decide(server);
        assert.equal(a, b, `connection ${clientIsn}/${serverIsn}`);
        if (a) kept++;
      }
      assert.equal(host1.sampledOut(), 2000 - kept);
      assert.equal(host2.sampledOut(), 2000 - kept);
    });

    it('should keep the configured share of healthy ends, within binomial bounds', () => {
      const n = 100_000, p = 0.1;
      const s = createSampler({ ratio: p, keepSlowerThanMs: 200 });
      let kept = 0;
      for (let i = 0; i < n; i++) if (s.decide(end()) !== undefined) kept++;
      const sigma = Math.sqrt(n * p * (1 - p));
      assert.ok(Math.abs(kept - n * p) <= 4 * sigma, `${kept} of ${n} kept, expected ${n * p} ± ${Math.round(4 * sigma)}`);
      assert.equal(s.sampledOut(), n - kept);
    });

    it('should keep at a higher ratio every trace it keeps at a lower one (consistent sampling)', () => {
      const low = createSampler({ ratio: 0.05, keepSlowerThanMs: 0 }), high = createSampler({ ratio: 0.2, keepSlowerThanMs: 0 });
      for (let i = 0; i < 20_000; i++) {
        const e = end();
        if (low.decide(e)) assert.ok(high.decide(e), e.traceId);
      }
    });

    it('should write th of the ratio on spans kept by it, th:0 on spans kept by a rule, and count only what it left out', () => {
      const s = createSampler({ ratio: 0.1, keepSlowerThanMs: 200 });
      const t = rejectionThreshold(0.1);
      const byRatio = end({ traceId: withRandomness(t) }), out = end({ traceId: withRandomness(t - 1n) });
      const failures = [end({ traceId: out.traceId, closeReason: 'refused', errno: ECONNREFUSED }), end({ traceId: out.traceId, retransmits: 2 }),
        end({ traceId: out.traceId, handshakeNs: 1.2e9 })];
      assert.deepEqual([byRatio, out, ...failures].map((e) => s.decide(e)), ['ratio', undefined, 'error', 'retransmit', 'slow_handshake']);
      assert.deepEqual((['ratio', 'error', 'retransmit', 'slow_handshake'] as const).map((r) => s.traceState(r)),
        ['ot=th:e6666666666666', 'ot=th:0', 'ot=th:0', 'ot=th:0']);
      assert.equal(s.sampledOut(), 1);
    });
  });
});
