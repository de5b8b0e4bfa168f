import assert from 'node:assert/strict';
import { buildFilter, encodeFilter, parseCidr, parsePort } from '../src/capture/filter.js';
import { CIDR_LAYOUT, FILTER_LAYOUT } from '../src/decode/wire-layout.js';

describe('filters', () => {
  it('should parse IPv4 and IPv6 ranges into network-order bytes', () => {
    assert.deepEqual({ ...parseCidr('10.1.2.0/24'), addr: [...parseCidr('10.1.2.0/24').addr] }, { family: 2, addr: [10, 1, 2, 0], prefix: 24, text: '10.1.2.0/24' });
    assert.deepEqual([...parseCidr('fd00:199::5/64').addr], [0xfd, 0, 1, 0x99, ...Array(11).fill(0), 5]);
    assert.deepEqual([...parseCidr('::ffff:1.2.3.4').addr], [...Array(10).fill(0), 255, 255, 1, 2, 3, 4]);
    assert.equal(parseCidr('::1').prefix, 128);
  });

  it('should reject bad ports and ranges with the expected form', () => {
    assert.throws(() => parsePort('0'), /invalid port '0': expected a number from 1 to 65535/);
    assert.throws(() => parsePort('http'), /invalid port 'http'/);
    assert.throws(() => parseCidr('10.0.0.0/33'), /prefix length must be 0 to 32/);
    assert.throws(() => parseCidr('example.com'), /expected an address or CIDR/);
    assert.throws(() => buildFilter(Array.from({ length: 17 }, (_, i) => String(i + 1)), []), /at most 16/);
  });

  it('should encode struct tcpspan_filter as the layout says', () => {
    const buf = encodeFilter(buildFilter(['443', '80', '443'], ['10.0.0.0/8', '::1'], 4026531833), true);
    const F = FILTER_LAYOUT.fields;
    assert.equal(buf.length, FILTER_LAYOUT.size);
    assert.deepEqual([buf.readUInt16LE(F.ports.offset), buf.readUInt16LE(F.ports.offset + 2), buf.readUInt16LE(F.ports.offset + 4)], [443, 80, 0]);
    assert.deepEqual([buf.readUInt32LE(F.n_ports.offset), buf.readUInt32LE(F.n_cidrs.offset), buf.readUInt32LE(F.netns.offset), buf.readUInt32LE(F.syn_sockops.offset)], [2, 2, 4026531833, 1]);
    const second = F.cidrs.offset + CIDR_LAYOUT.size;
    assert.deepEqual([buf[second + 15], buf.readUInt32LE(second + CIDR_LAYOUT.fields.family.offset), buf.readUInt32LE(second + CIDR_LAYOUT.fields.prefix.offset)], [1, 10, 128]);
  });
});
