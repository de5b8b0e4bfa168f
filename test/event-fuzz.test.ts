// Property-based tests of decodeEvent: over random bytes and over valid records mutated at
// random, at random 8-byte offsets, it never throws, never hangs, gives every field a value
// of its C type, and agrees with a slow reference decoder built on Buffer reads.
import assert from 'node:assert/strict';
import {
  CONN_SIZE, decodeEvent, EventFlag, EventKind, newKernelEvent, recordMemory, type KernelEvent,
} from '../src/decode/event.js';
import { CONN_LAYOUT, EVENT_LAYOUT, MAX_TRANSITIONS, PAYLOAD_LAYOUT, PAYLOAD_MAX } from '../src/decode/wire-layout.js';
import { forAll, fuzzSeed, type Rng } from './support/fuzz.js';

type CType = 'u64' | 'u32' | 'i32' | 'u16' | 'u8';
type Scalar = Exclude<keyof KernelEvent, 'transNs' | 'transState' | 'comm' | 'payload'>;

const RANGE: Record<CType, [number, number]> = {
  u64: [0, 2 ** 64], u32: [0, 2 ** 32 - 1], i32: [-(2 ** 31), 2 ** 31 - 1], u16: [0, 65535], u8: [0, 255],
};

const H = CONN_LAYOUT.fields; // the head is the same in both layouts
const C = CONN_LAYOUT.fields;
const E = EVENT_LAYOUT.fields;
const P = PAYLOAD_LAYOUT.fields;

/** Each scalar field of KernelEvent: where it is in a record and its C type. */
const HEAD: [Scalar, number, CType][] = [
  ['tsNs', H.ts_ns.offset, 'u64'], ['cookie', H.cookie.offset, 'u64'],
  ['laddr0', H.laddr.offset, 'u32'], ['laddr1', H.laddr.offset + 4, 'u32'], ['laddr2', H.laddr.offset + 8, 'u32'], ['laddr3', H.laddr.offset + 12, 'u32'],
  ['raddr0', H.raddr.offset, 'u32'], ['raddr1', H.raddr.offset + 4, 'u32'], ['raddr2', H.raddr.offset + 8, 'u32'], ['raddr3', H.raddr.offset + 12, 'u32'],
  ['netns', H.netns.offset, 'u32'], ['lport', H.lport.offset, 'u16'], ['rport', H.rport.offset, 'u16'], ['family', H.family.offset, 'u16'],
  ['kind', H.kind.offset, 'u8'], ['flags', H.flags.offset, 'u8'], ['state', H.state.offset, 'u8'],
];
const EVENT: [Scalar, number, CType][] = [
  ['lifeStartNs', E.life_start_ns.offset, 'u64'], ['life', E.life.offset, 'u8'], ['error', E.error.offset, 'i32'],
  ['seq', E.seq.offset, 'u32'], ['segs', E.segs.offset, 'u16'], ['tcpFlags', E.tcp_flags.offset, 'u8'],
];
/** payloadLen is checked apart: the decoder caps it at PAYLOAD_MAX */
const PAYLOAD: [Scalar, number, CType][] = [
  ['lifeStartNs', P.life_start_ns.offset, 'u64'], ['life', P.life.offset, 'u8'], ['seq', P.seq.offset, 'u32'],
  ['payloadSegLen', P.seg_len.offset, 'u32'], ['payloadDir', P.dir.offset, 'u8'], ['payloadWhat', P.what.offset, 'u8'],
];
const CONN: [Scalar, number, CType][] = [
  ['startNs', C.start_ns.offset, 'u64'], ['nTrans', C.n_trans.offset, 'u8'], ['firstOldstate', C.first_oldstate.offset, 'u8'], ['portOrigin', C.port_origin.offset, 'u8'],
  ['bytesAcked', C.bytes_acked.offset, 'u64'], ['bytesReceived', C.bytes_received.offset, 'u64'], ['rttSumUs', C.rtt_sum_us.offset, 'u64'],
  ['cgroupId', C.cgroup_id.offset, 'u64'],
  ['rttCount', C.rtt_count.offset, 'u32'], ['rttMinUs', C.rtt_min_us.offset, 'u32'], ['rttMaxUs', C.rtt_max_us.offset, 'u32'],
  ['srttUs', C.srtt_us.offset, 'u32'], ['segsIn', C.segs_in.offset, 'u32'], ['segsOut', C.segs_out.offset, 'u32'],
  ['totalRetrans', C.total_retrans.offset, 'u32'], ['retransSegs', C.retrans_segs.offset, 'u32'],
  ['retransFailed', C.retrans_failed.offset, 'u32'], ['isnLocal', C.isn_local.offset, 'u32'], ['isnPeer', C.isn_peer.offset, 'u32'],
  ['pid', C.pid.offset, 'u32'], ['error', C.error.offset, 'i32'],
];

function read(buf: Buffer, at: number, type: CType): number {
  switch (type) {
    case 'u64': return Number(buf.readBigUInt64LE(at));
    case 'u32': return buf.readUInt32LE(at);
    case 'i32': return buf.readInt32LE(at);
    case 'u16': return buf.readUInt16LE(at);
    case 'u8': return buf.readUInt8(at);
  }
}

const isConn = (kind: number): boolean => kind === EventKind.Open || kind === EventKind.Close;
const fieldsOf = (kind: number) => (isConn(kind) ? CONN : kind === EventKind.Payload ? PAYLOAD : EVENT);

/** What decodeEvent must give for the record at `off`: only the fields its kind carries. */
function reference(buf: Buffer, off: number): Partial<KernelEvent> {
  const out: Record<string, unknown> = {};
  const kind = buf[off + H.kind.offset]!;
  for (const [name, at, type] of [...HEAD, ...fieldsOf(kind)]) out[name] = read(buf, off + at, type);
  if (kind === EventKind.Payload) {
    const len = Math.min(read(buf, off + P.len.offset, 'u16'), PAYLOAD_MAX);
    out['payloadLen'] = len;
    out['payload'] = [...buf.subarray(off + P.data.offset, off + P.data.offset + len)];
  }
  if (isConn(kind)) {
    const kept = Math.min(out['nTrans'] as number, MAX_TRANSITIONS);
    out['transNs'] = Array.from({ length: kept }, (_, i) => read(buf, off + C.trans_ns.offset + 8 * i, 'u64'));
    out['transState'] = Array.from({ length: kept }, (_, i) => read(buf, off + C.trans_state.offset + i, 'u8'));
    const raw = buf.subarray(off + C.comm.offset, off + C.comm.offset + 16);
    const nul = raw.indexOf(0);
    out['comm'] = (out['flags'] as number) & EventFlag.Pid ? raw.subarray(0, nul === -1 ? 16 : nul).toString('utf8') : '';
  }
  return out as Partial<KernelEvent>;
}

/** The decoded event, cut to what reference() gives, after checking every field has a value of its type. */
function decoded(ev: KernelEvent): Partial<KernelEvent> {
  const out: Record<string, unknown> = {};
  const conn = isConn(ev.kind);
  for (const [name, , type] of [...HEAD, ...EVENT, ...PAYLOAD, ...CONN, ['payloadLen', 0, 'u16'] as [Scalar, number, CType]]) {
    const v = ev[name] as number;
    const [lo, hi] = RANGE[type];
    // stale fields of the other kind too: always a value of the type, never NaN or undefined
    assert.ok(Number.isInteger(v) && v >= lo && (type === 'u64' ? v < hi || v === hi : v <= hi), `${name} = ${v} is no ${type}`);
  }
  for (const [name] of [...HEAD, ...fieldsOf(ev.kind)]) out[name] = ev[name];
  if (ev.kind === EventKind.Payload) {
    out['payloadLen'] = ev.payloadLen;
    out['payload'] = [...ev.payload];
  }
  if (conn) {
    const kept = Math.min(ev.nTrans, MAX_TRANSITIONS);
    assert.equal(ev.transNs.length, MAX_TRANSITIONS);
    assert.equal(ev.transState.length, MAX_TRANSITIONS);
    out['transNs'] = ev.transNs.slice(0, kept);
    out['transState'] = ev.transState.slice(0, kept);
    assert.equal(typeof ev.comm, 'string');
    assert.ok(Buffer.byteLength(ev.comm) <= 16 * 3, `comm ${JSON.stringify(ev.comm)}`); // 16 bytes, each at most one U+FFFD
    assert.ok(!ev.comm.includes('\0'));
    out['comm'] = ev.comm;
  }
  return out as Partial<KernelEvent>;
}

/** A record the kernel could send: valid kind, family, states, counts. */
function validRecord(rng: Rng): Buffer {
  const kind = rng.int(EventKind.Open, EventKind.Payload);
  const buf = rng.bytes(isConn(kind) ? CONN_SIZE : kind === EventKind.Payload ? P.data.offset + 64 : EVENT_LAYOUT.size);
  buf.writeUInt8(kind, H.kind.offset);
  buf.writeUInt16LE(rng.pick([2, 10]), H.family.offset);
  buf.writeUInt8(rng.int(1, 12), H.state.offset);
  buf.writeBigUInt64LE(BigInt(rng.int(0, 2 ** 48)), H.ts_ns.offset);
  if (isConn(kind)) {
    buf.writeUInt8(rng.int(0, 12), C.n_trans.offset);
    const comm = Buffer.from(rng.pick(['curl', 'node', 'postgres', 'kworker/0:1', 'ñandú', 'a-name-of-15-ch']));
    buf.fill(0, C.comm.offset, C.comm.offset + 16);
    comm.copy(buf, C.comm.offset, 0, 15);
  }
  return buf;
}

/** A mutation a corrupt or misread record might show: a byte, a bit, or a whole 8-byte word. */
function mutate(rng: Rng, rec: Buffer): void {
  const at = rng.int(0, rec.length - 1);
  switch (rng.int(0, 4)) {
    case 0: rec[at] = rng.int(0, 255); break;
    case 1: rec[at]! ^= 1 << rng.int(0, 7); break;
    case 2: rec.fill(rng.pick([0, 0xff]), at & ~7, Math.min(rec.length, (at & ~7) + 8)); break;
    case 3: rec.writeUInt8(rng.pick([0, 1, 2, 3, 7, 8, 255]), H.kind.offset); break; // the kind says another size
    default: if (rec.length === CONN_SIZE) rec.writeUInt8(rng.pick([0, 8, 9, 255]), C.n_trans.offset); break; // more transitions than kept
  }
}

const BUFFER = 4096;

describe('decodeEvent (fuzzed)', function () {
  this.timeout(20_000);

  it('should decode random bytes at every 8-byte offset into values of their types, as the reference does', () => {
    const out = newKernelEvent(); // reused, as the bridge does: stale fields must not matter
    const runs = forAll(fuzzSeed(0x5eed0001), 400, 2500, (rng) => {
      const buf = rng.bytes(BUFFER);
      // half the records get a kind this version knows, so both layouts are read
      const off = 8 * rng.int(0, (BUFFER - CONN_SIZE) / 8);
      if (rng.chance(0.5)) buf[off + H.kind.offset] = rng.int(EventKind.Open, EventKind.Payload);
      return { buf, off };
    }, ({ buf, off }) => {
      const copy = Buffer.from(buf);
      decodeEvent(recordMemory(copy.buffer.slice(copy.byteOffset, copy.byteOffset + copy.length) as ArrayBuffer), off, out);
      assert.deepStrictEqual(decoded(out), reference(buf, off));
    }, ({ buf, off }) => `offset ${off}: ${buf.subarray(off, off + CONN_SIZE).toString('hex')}`);
    assert.ok(runs >= 100, `only ${runs} runs in the time budget`);
  });

  it('should decode valid records mutated at random, placed at random 8-byte offsets, as the reference does', () => {
    const out = newKernelEvent();
    const runs = forAll(fuzzSeed(0x5eed0002), 3000, 2500, (rng) => {
      const rec = validRecord(rng);
      for (let n = rng.int(0, 6); n > 0; n--) mutate(rng, rec);
      const buf = rng.bytes(BUFFER); // garbage around it
      const off = 8 * rng.int(0, (BUFFER - CONN_SIZE) / 8);
      rec.copy(buf, off);
      return { buf, off, rec };
    }, ({ buf, off }) => {
      decodeEvent(recordMemory(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer), off, out);
      assert.deepStrictEqual(decoded(out), reference(buf, off));
    }, ({ off, rec }) => `offset ${off}: ${rec.toString('hex')}`);
    assert.ok(runs >= 500, `only ${runs} runs in the time budget`);
  });

  it('should take about the same time for any bytes (no input makes it loop)', () => {
    const out = newKernelEvent();
    const buf = Buffer.alloc(BUFFER, 0xff); // every count at its maximum
    buf[H.kind.offset] = EventKind.Close;
    buf.fill(0x41, C.comm.offset, C.comm.offset + 16); // comm with no NUL
    const mem = recordMemory(buf.buffer.slice(buf.byteOffset, buf.byteOffset + buf.length) as ArrayBuffer);
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 10_000; i++) decodeEvent(mem, 0, out);
    const perRecordUs = Number(process.hrtime.bigint() - t0) / 1e3 / 10_000;
    assert.ok(perRecordUs < 50, `${perRecordUs.toFixed(2)} us a record`);
    assert.equal(out.nTrans, 255);
    assert.equal(out.comm, 'A'.repeat(16));
  });
});
