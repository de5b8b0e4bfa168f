import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { decodeEvent, newKernelEvent, recordMemory, EventFlag } from '../src/decode/event.js';
import { EVENT_LAYOUT } from '../src/decode/wire-layout.js';
import { formatAddress, localAddress, remoteAddress } from '../src/decode/format.js';

type Fields = keyof typeof EVENT_LAYOUT.fields;

/** Writes a record the way the kernel would, field by field from the layout table. */
function encode(buf: Buffer, base: number, values: Partial<Record<Fields, number | bigint | Buffer>>): void {
  for (const [name, v] of Object.entries(values) as [Fields, number | bigint | Buffer][]) {
    const { offset, size } = EVENT_LAYOUT.fields[name];
    const at = base + offset;
    if (Buffer.isBuffer(v)) v.copy(buf, at, 0, size);
    else if (size === 8) buf.writeBigUInt64LE(BigInt(v), at);
    else if (size === 4) name === 'error' ? buf.writeInt32LE(Number(v), at) : buf.writeUInt32LE(Number(v), at);
    else if (size === 2) buf.writeUInt16LE(Number(v), at);
    else buf.writeUInt8(Number(v), at);
  }
}

const u32 = () => randomInt(0, 2 ** 32 - 1);
const u64 = () => randomInt(0, 2 ** 48 - 1);

describe('decodeEvent', () => {
  it('should decode every field of a record written at any 8-byte offset', () => {
    for (let round = 0; round < 50; round++) {
      const buf = Buffer.alloc(4096);
      const base = 8 * randomInt(0, 400);
      const want = {
        tsNs: u64(), cookie: u64(), synNs: u64(), bytesAcked: u64(), bytesReceived: u64(), rxBytes: u64(), rttSumUs: u64(),
        rttCount: u32(), rttMinUs: u32(), rttMaxUs: u32(), srttUs: u32(), rxSegs: u32(), segsIn: u32(), segsOut: u32(),
        totalRetrans: u32(), isnLocal: u32(), isnPeer: u32(), netns: u32(), pid: u32(), error: randomInt(-200, 1) /* never -0, which deepEqual tells from 0 */, seq: u32(),
        lport: randomInt(0, 65535), rport: randomInt(0, 65535), family: 10, segs: randomInt(0, 65535), kind: randomInt(1, 7),
        oldstate: randomInt(1, 12), state: randomInt(1, 12), tcpFlags: randomInt(0, 255), flags: EventFlag.Pid | randomInt(0, 14),
      };
      const laddr = Buffer.from(Array.from({ length: 16 }, () => randomInt(0, 255)));
      const raddr = Buffer.from(Array.from({ length: 16 }, () => randomInt(0, 255)));
      encode(buf, base, {
        ts_ns: want.tsNs, cookie: want.cookie, syn_ns: want.synNs, bytes_acked: want.bytesAcked, bytes_received: want.bytesReceived,
        rx_bytes: want.rxBytes, rtt_sum_us: want.rttSumUs, rtt_count: want.rttCount, rtt_min_us: want.rttMinUs, rtt_max_us: want.rttMaxUs,
        srtt_us: want.srttUs, rx_segs: want.rxSegs, segs_in: want.segsIn, segs_out: want.segsOut, total_retrans: want.totalRetrans,
        isn_local: want.isnLocal, isn_peer: want.isnPeer, netns: want.netns, pid: want.pid, error: want.error, seq: want.seq,
        laddr, raddr, lport: want.lport, rport: want.rport, family: want.family, segs: want.segs, kind: want.kind, oldstate: want.oldstate,
        state: want.state, tcp_flags: want.tcpFlags, flags: want.flags, comm: Buffer.from(`proc${round}\0garbage`),
      });
      const out = newKernelEvent();
      const mem = recordMemory(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer);
      decodeEvent(mem, base, out);
      const { laddr0, laddr1, laddr2, laddr3, raddr0, raddr1, raddr2, raddr3, comm, ...rest } = out;
      assert.deepEqual(rest, want);
      assert.equal(comm, `proc${round}`);
      assert.equal(localAddress(out), formatAddress(10, laddr.readUInt32LE(0), laddr.readUInt32LE(4), laddr.readUInt32LE(8), laddr.readUInt32LE(12)));
      assert.deepEqual([laddr0, laddr1, laddr2, laddr3, raddr0, raddr1, raddr2, raddr3],
        [0, 4, 8, 12].map((o) => laddr.readUInt32LE(o)).concat([0, 4, 8, 12].map((o) => raddr.readUInt32LE(o))));
      assert.ok(remoteAddress(out).includes(':'));
    }
  });

  it('should leave comm empty when the pid was not taken in process context', () => {
    const buf = Buffer.alloc(256);
    encode(buf, 0, { flags: 0, pid: 0, comm: Buffer.from('ghost') });
    const out = newKernelEvent();
    decodeEvent(recordMemory(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer), 0, out);
    assert.equal(out.comm, '');
  });
});

describe('formatAddress', () => {
  const words = (bytes: number[]) => {
    const b = Buffer.alloc(16);
    Buffer.from(bytes).copy(b);
    return [0, 4, 8, 12].map((o) => b.readUInt32LE(o)) as [number, number, number, number];
  };
  const v6 = (hex: string) => words(Array.from(Buffer.from(hex, 'hex')));

  it('should print IPv4 and IPv6 as inet_ntop does', () => {
    assert.equal(formatAddress(2, ...words([10, 199, 1, 2])), '10.199.1.2');
    assert.equal(formatAddress(10, ...v6('00000000000000000000000000000001')), '::1');
    assert.equal(formatAddress(10, ...v6('00000000000000000000000000000000')), '::');
    assert.equal(formatAddress(10, ...v6('fd000199000100000000000000000002')), 'fd00:199:1::2');
    assert.equal(formatAddress(10, ...v6('20010db8000000010000000000000001')), '2001:db8:0:1::1');
    assert.equal(formatAddress(10, ...v6('20010db8000100010001000100010001')), '2001:db8:1:1:1:1:1:1');
    assert.equal(formatAddress(10, ...v6('00000000000000000000ffff7f000001')), '::ffff:127.0.0.1');
  });
});
