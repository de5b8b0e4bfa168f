// Trace identity: the SHA-256 the ids come from, as trace-id.ts documents it.
import assert from 'node:assert/strict';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { sha256OneBlock } from '../src/correlate/sha256-block.js';
import { traceIdentityFromIsn } from '../src/correlate/trace-id.js';

describe('trace identity', () => {
  it('should compute SHA-256 of short messages exactly as node:crypto does', () => {
    const out = new Uint32Array(8);
    for (let len = 0; len < 56; len++) {
      for (let round = 0; round < 20; round++) {
        const msg = randomBytes(len);
        sha256OneBlock(msg, len, out);
        const got = Buffer.alloc(32);
        out.forEach((w, i) => got.writeUInt32BE(w, 4 * i));
        assert.equal(got.toString('hex'), createHash('sha256').update(msg).digest('hex'), `length ${len}`);
      }
    }
    assert.throws(() => sha256OneBlock(Buffer.alloc(56), 56, out), /at most 55 bytes/);
  });

  it('should derive the ids from SHA-256("tcpspan/trace/v1" || client ISN || server ISN), the same for both ends', () => {
    for (let round = 0; round < 200; round++) {
      const c = randomInt(0, 2 ** 32), s = randomInt(0, 2 ** 32);
      const isns = Buffer.alloc(8);
      isns.writeUInt32BE(c, 0);
      isns.writeUInt32BE(s, 4);
      const d = createHash('sha256').update('tcpspan/trace/v1').update(isns).digest('hex');
      const want = { traceId: d.slice(0, 32), clientSpanId: d.slice(32, 48), serverSpanId: d.slice(48, 64) };
      assert.deepEqual(traceIdentityFromIsn(c, s), want);
      assert.deepEqual(traceIdentityFromIsn(c, s), want, 'again, as the other end asks');
      assert.deepEqual(traceIdentityFromIsn(c, (s + 1) >>> 0).traceId === want.traceId, false);
    }
  });
});
