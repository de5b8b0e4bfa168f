import assert from 'node:assert/strict';
import { randomInt } from 'node:crypto';
import { decodeEvent, EventFlag, EventKind, newKernelEvent, PortOrigin, recordMemory, recordSize } from '../src/decode/event.js';
import { CONN_LAYOUT, EVENT_LAYOUT, PAYLOAD_LAYOUT, MAX_TRANSITIONS } from '../src/decode/wire-layout.js';
import { createClock, eventToJson, formatAddress, localAddress, remoteAddress } from '../src/decode/format.js';

type Layout = { readonly fields: Record<string, { readonly offset: number; readonly size: number }> };

/** Writes a record the way the kernel would, field by field from the layout table. */
function encode(layout: Layout, buf: Buffer, base: number, values: Record<string, number | bigint | Buffer | number[]>): void {
  for (const [name, v] of Object.entries(values)) {
    const { offset, size } = layout.fields[name]!;
    const at = base + offset;
    if (Buffer.isBuffer(v)) v.copy(buf, at, 0, size);
    else if (Array.isArray(v)) {
      const each = size / MAX_TRANSITIONS;
      v.forEach((x, i) => (each === 8 ? buf.writeBigUInt64LE(BigInt(x), at + 8 * i) : buf.writeUInt8(x, at + i)));
    } else if (size === 8) buf.writeBigUInt64LE(BigInt(v), at);
    else if (size === 4) name === 'error' ? buf.writeInt32LE(Number(v), at) : buf.writeUInt32LE(Number(v), at);
    else if (size === 2) buf.writeUInt16LE(Number(v), at);
    else buf.writeUInt8(Number(v), at);
  }
}

const u32 = () => randomInt(0, 2 ** 32 - 1);
const u64 = () => randomInt(0, 2 ** 48 - 1);
const memoryOf = (buf: Buffer) => recordMemory(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer);

function randomHead(kind: number) {
  const want = {
    tsNs: u64(), cookie: u64(), netns: u32(), lport: randomInt(0, 65535), rport: randomInt(0, 65535), family: 10, kind,
    flags: EventFlag.Pid | randomInt(0, 254), state: randomInt(1, 12),
  };
  const laddr = Buffer.from(Array.from({ length: 16 }, () => randomInt(0, 255)));
  const raddr = Buffer.from(Array.from({ length: 16 }, () => randomInt(0, 255)));
  const wire = {
    ts_ns: want.tsNs, cookie: want.cookie, netns: want.netns, lport: want.lport, rport: want.rport, family: want.family,
    kind, flags: want.flags, state: want.state, laddr, raddr,
  };
  return { want, wire, laddr, raddr };
}

describe('decodeEvent', () => {
  it('should decode every field of a connection record written at any 8-byte offset', () => {
    for (let round = 0; round < 50; round++) {
      const buf = Buffer.alloc(4096);
      const base = 8 * randomInt(0, 400);
      const head = randomHead(randomInt(EventKind.Open, EventKind.Close + 1));
      const nTrans = randomInt(0, 12);
      const transNs = Array.from({ length: MAX_TRANSITIONS }, u64);
      const transState = Array.from({ length: MAX_TRANSITIONS }, () => randomInt(1, 12));
      const want = {
        startNs: u64(), bytesAcked: u64(), bytesReceived: u64(), rttSumUs: u64(), cgroupId: u64(), rttCount: u32(), rttMinUs: u32(),
        rttMaxUs: u32(), srttUs: u32(), segsIn: u32(), segsOut: u32(), totalRetrans: u32(), retransSegs: u32(),
        retransFailed: u32(), isnLocal: u32(), isnPeer: u32(), pid: u32(), error: randomInt(-200, 1) /* never -0, which deepEqual tells from 0 */,
        firstOldstate: randomInt(1, 12), portOrigin: randomInt(0, 3), nTrans,
      };
      encode(CONN_LAYOUT, buf, base, {
        ...head.wire, start_ns: want.startNs, trans_ns: transNs, trans_state: transState, bytes_acked: want.bytesAcked,
        bytes_received: want.bytesReceived, rtt_sum_us: want.rttSumUs, cgroup_id: want.cgroupId, rtt_count: want.rttCount, rtt_min_us: want.rttMinUs,
        rtt_max_us: want.rttMaxUs, srtt_us: want.srttUs, segs_in: want.segsIn, segs_out: want.segsOut,
        total_retrans: want.totalRetrans, retrans_segs: want.retransSegs, retrans_failed: want.retransFailed,
        isn_local: want.isnLocal, isn_peer: want.isnPeer, pid: want.pid, error: want.error, first_oldstate: want.firstOldstate, port_origin: want.portOrigin,
        n_trans: nTrans, comm: Buffer.from(`proc${round}\0garbage`),
      });
      const out = newKernelEvent();
      decodeEvent(memoryOf(buf), base, out);
      const kept = Math.min(nTrans, MAX_TRANSITIONS);
      const got = Object.fromEntries(Object.keys({ ...head.want, ...want }).map((k) => [k, out[k as keyof typeof out]]));
      assert.deepEqual(got, { ...head.want, ...want });
      assert.deepEqual(out.transNs.slice(0, kept), transNs.slice(0, kept));
      assert.deepEqual(out.transState.slice(0, kept), transState.slice(0, kept));
      assert.equal(out.comm, `proc${round}`);
      assert.equal(localAddress(out), formatAddress(10, ...[0, 4, 8, 12].map((o) => head.laddr.readUInt32LE(o)) as [number, number, number, number]));
      assert.deepEqual([out.raddr0, out.raddr1, out.raddr2, out.raddr3], [0, 4, 8, 12].map((o) => head.raddr.readUInt32LE(o)));
    }
  });

  it('should decode every field of a rare event written at any 8-byte offset', () => {
    for (let round = 0; round < 50; round++) {
      const buf = Buffer.alloc(4096);
      const base = 8 * randomInt(0, 400);
      const head = randomHead(randomInt(EventKind.Retransmit, EventKind.Error + 1));
      const want = {
        lifeStartNs: u64(), life: randomInt(0, 4), error: randomInt(-200, 1), seq: u32(), segs: randomInt(0, 65535),
        tcpFlags: randomInt(0, 255),
      };
      encode(EVENT_LAYOUT, buf, base, {
        ...head.wire, life_start_ns: want.lifeStartNs, life: want.life, error: want.error, seq: want.seq, segs: want.segs,
        tcp_flags: want.tcpFlags,
      });
      const out = newKernelEvent();
      decodeEvent(memoryOf(buf), base, out);
      const got = Object.fromEntries(Object.keys({ ...head.want, ...want }).map((k) => [k, out[k as keyof typeof out]]));
      assert.deepEqual(got, { ...head.want, ...want });
      assert.deepEqual([out.laddr0, out.laddr1, out.laddr2, out.laddr3], [0, 4, 8, 12].map((o) => head.laddr.readUInt32LE(o)));
      assert.ok(remoteAddress(out).includes(':'));
    }
  });

  it('should size records by kind, and know no size for an unknown kind', () => {
    // a payload record is variable: its head at least
    assert.deepEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map(recordSize),
      [0, CONN_LAYOUT.size, CONN_LAYOUT.size, ...Array(5).fill(EVENT_LAYOUT.size), PAYLOAD_LAYOUT.fields.data.offset, EVENT_LAYOUT.size, 0]);
  });

  it('should leave comm empty when the pid was not taken in process context', () => {
    const buf = Buffer.alloc(256);
    encode(CONN_LAYOUT, buf, 0, { kind: EventKind.Close, flags: 0, pid: 0, comm: Buffer.from('ghost') });
    const out = newKernelEvent();
    decodeEvent(memoryOf(buf), 0, out);
    assert.equal(out.comm, '');
  });
});

describe('eventToJson', () => {
  it('should say how a life first seen open took its local port, and nothing for one seen from its start', () => {
    const e = newKernelEvent();
    e.kind = EventKind.Close;
    e.family = 2;
    const port = (origin: number) => { e.portOrigin = origin; return eventToJson(e, createClock())['local_port']; };
    assert.deepEqual([port(PortOrigin.Connect), port(PortOrigin.Bound), port(PortOrigin.Unknown)], ['connect', 'bound', undefined]);
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
