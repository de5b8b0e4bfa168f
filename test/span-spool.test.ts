// The export spool on its own (records in, records out, damage, bounds, the directory), and the
// export queue driving it against an exporter that fails and recovers.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import * as grpc from '@grpc/grpc-js';
import { inspectSpool, openSpanSpool, SpoolError, type SpanSpool, type SpoolCodec, type SpoolDropReason } from '../src/export/span-spool.js';
import { createSpanExportQueue, type BatchExporter, type SpanDropReason, type SpanExportQueueOptions } from '../src/export/span-export-queue.js';
import { createEncodedSpanCodec } from '../src/export/encoded-span-record.js';
import { createSpanOwners } from '../src/attribute/span-owner.js';

/** Items are numbers; a record is the number and `pad` bytes, so sizes can be chosen. */
function numbers(pad = 0): SpoolCodec<number> {
  return {
    size: () => 4 + pad,
    write: (n, buf, off) => { buf.writeUInt32LE(n, off); buf.fill(0xab, off + 4, off + 4 + pad); },
    read: (p) => p.readUInt32LE(0),
  };
}

const range = (from: number, n: number): number[] => Array.from({ length: n }, (_, i) => from + i);

describe('SpanSpool', () => {
  let dir: string;
  const open: SpanSpool<number>[] = [];
  beforeEach(() => { dir = fs.mkdtempSync(path.join(tmpdir(), 'tcpspan-spool-')); });
  afterEach(() => {
    for (const s of open.splice(0)) s.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  function spool(opts: { maxBytes?: number; pad?: number; sub?: string } = {}) {
    const drops: [number, SpoolDropReason][] = [];
    const s = openSpanSpool({ dir: path.join(dir, opts.sub ?? 'spool'), maxBytes: opts.maxBytes ?? 16 * 1024 * 1024, codec: numbers(opts.pad) });
    s.onDrop((n, r) => drops.push([n, r]));
    open.push(s);
    return { s, drops };
  }

  /** Reads and acknowledges everything, in batches of `max`. */
  function drain(s: SpanSpool<number>, max = 1000): number[] {
    const out: number[] = [];
    for (let b = s.read(max); b !== undefined; b = s.read(max)) {
      out.push(...b.items);
      s.ack(b);
    }
    return out;
  }

  const segments = (d = path.join(dir, 'spool')): string[] => fs.readdirSync(d).filter((f) => f.endsWith('.seg')).sort();

  describe('records', () => {
    it('should give back what was appended, in order, across segments, and remove delivered segments', () => {
      const { s, drops } = spool({ maxBytes: 1024 * 1024, pad: 100 }); // 64 KiB segments: ~560 records each
      assert.equal(s.append(range(0, 3000)), 3000);
      assert.equal(s.spans(), 3000);
      assert.ok(segments().length >= 5, `${segments().length} segments`);
      const first = s.read(700)!;
      assert.deepEqual(first.items, range(0, first.items.length));
      assert.equal(s.unread(), 3000 - first.items.length);
      assert.equal(s.read(10), undefined, 'one batch out at a time');
      s.ack(first);
      assert.deepEqual([...first.items, ...drain(s, 700)], range(0, 3000));
      assert.equal(s.spans(), 0);
      assert.deepEqual(segments(), [], 'nothing left on disk');
      assert.deepEqual(drops, []);
    });

    it('should resend after a restart only what was not acknowledged (also without close, as after a SIGKILL)', () => {
      const a = spool({ maxBytes: 1024 * 1024, pad: 100 });
      a.s.append(range(0, 2000));
      const b1 = a.s.read(300)!;
      a.s.ack(b1);
      const b2 = a.s.read(300)!; // out, never acknowledged: the crash window
      assert.equal(b2.items[0], 300);
      open.splice(0); // no close(): killed

      const b = spool({ maxBytes: 1024 * 1024, pad: 100 });
      assert.deepEqual({ records: b.s.opened.records, corrupt: b.s.opened.corrupt }, { records: 1700, corrupt: 0 });
      assert.deepEqual(drain(b.s), range(300, 1700));
    });

    it('should keep appending after a restart, the earlier records first', () => {
      const a = spool();
      a.s.append(range(0, 10));
      a.s.close();
      open.splice(0);
      const b = spool();
      b.s.append(range(10, 5));
      assert.deepEqual(drain(b.s), range(0, 15));
    });

    it('should never reuse a segment number that ack.json still names', () => {
      const a = spool();
      a.s.append(range(0, 10));
      const batch = a.s.read(4)!;
      a.s.ack(batch); // ack.json names segment 1
      a.s.close();
      open.splice(0);
      const b = spool();
      assert.deepEqual(drain(b.s), range(4, 6));
      b.s.append([99]);
      b.s.close();
      open.splice(0);
      assert.equal(spool().s.opened.records, 1);
    });
  });

  describe('damage', () => {
    /** A spool of 100 records in one segment, closed, and the segment's path. */
    function written(n = 100): string {
      const a = spool({ pad: 20 });
      a.s.append(range(0, n));
      a.s.close();
      open.splice(0);
      return path.join(dir, 'spool', segments()[0]!);
    }
    const RECORD = 12 + 24;

    it('should skip and count one record whose bytes changed, and read the rest', () => {
      const file = written();
      const data = fs.readFileSync(file);
      data[16 + RECORD * 40 + 12 + 2] ^= 0xff; // in record 40's payload
      fs.writeFileSync(file, data);
      const { s, drops } = spool({ pad: 20 });
      assert.deepEqual({ records: s.opened.records, corrupt: s.opened.corrupt }, { records: 99, corrupt: 1 });
      assert.deepEqual(drops, [[1, 'spool_corrupt']]);
      assert.deepEqual(drain(s, 30), range(0, 100).filter((i) => i !== 40));
      assert.deepEqual(drops, [[1, 'spool_corrupt']], 'counted once, when found');
    });

    it('should skip a truncated tail (a power loss mid-write) and count it', () => {
      const file = written();
      fs.truncateSync(file, 16 + RECORD * 60 + 7);
      const { s, drops } = spool({ pad: 20 });
      assert.deepEqual({ records: s.opened.records, corrupt: s.opened.corrupt }, { records: 60, corrupt: 1 });
      assert.deepEqual(drain(s), range(0, 60));
      assert.deepEqual(drops, [[1, 'spool_corrupt']]);
    });

    it('should resynchronise after a damaged stretch (a broken length) on the next good record', () => {
      const file = written();
      const data = fs.readFileSync(file);
      data.fill(0xee, 16 + RECORD * 10 + 3, 16 + RECORD * 13 + 5); // records 10 to 13 damaged, 13's magic among them
      fs.writeFileSync(file, data);
      const { s } = spool({ pad: 20 });
      assert.deepEqual(drain(s), [...range(0, 10), ...range(14, 86)]);
      assert.equal(s.opened.corrupt, 1, 'one stretch: its records cannot be told apart (a lower bound)');
    });

    it('should remove and count a file that is not a segment, ignore other names, and never fail', () => {
      written(5);
      const d = path.join(dir, 'spool');
      fs.writeFileSync(path.join(d, '000000000000.seg'), 'not a spool at all');
      fs.writeFileSync(path.join(d, 'notes.txt'), 'left alone');
      fs.writeFileSync(path.join(d, 'ack.json'), '{broken');
      const { s, drops } = spool({ pad: 20 });
      assert.deepEqual({ records: s.opened.records, corrupt: s.opened.corrupt }, { records: 5, corrupt: 1 });
      assert.match(s.opened.notes.join('\n'), /000000000000\.seg: not a spool segment \(bad header, 18 bytes\); removed/);
      assert.deepEqual(drops, [[1, 'spool_corrupt']]);
      assert.ok(!fs.existsSync(path.join(d, '000000000000.seg')));
      assert.ok(fs.existsSync(path.join(d, 'notes.txt')));
      assert.deepEqual(drain(s), range(0, 5));
    });

    it('should agree with inspectSpool, which changes nothing', () => {
      const file = written();
      fs.truncateSync(file, 16 + RECORD * 30);
      assert.deepEqual(inspectSpool(path.join(dir, 'spool')), { records: 30, bytes: 16 + RECORD * 30, corrupt: 0, segments: 1 });
    });
  });

  describe('bound', () => {
    it('should drop the oldest segment when full, counting its records as spool_full', () => {
      const { s, drops } = spool({ maxBytes: 1024 * 1024, pad: 1000 }); // 64 KiB segments, ~64 records each
      assert.equal(s.append(range(0, 2000)), 2000);
      assert.ok(s.bytes() <= 1024 * 1024, `${s.bytes()} bytes`);
      const dropped = drops.reduce((n, [k]) => n + k, 0);
      assert.ok(drops.every(([, r]) => r === 'spool_full'));
      assert.equal(dropped + s.spans(), 2000, 'every record is in the spool or counted');
      assert.deepEqual(drain(s), range(dropped, 2000 - dropped), 'the newest kept, in order');
    });

    it('should leave a batch that is out to its reader when its segment goes for room', () => {
      const { s, drops } = spool({ maxBytes: 1024 * 1024, pad: 1000 });
      s.append(range(0, 100));
      const out = s.read(10)!;
      s.append(range(100, 2000));
      assert.equal(out.detached, true);
      const dropped = drops.reduce((n, [k]) => n + k, 0);
      assert.equal(dropped + 10 + s.spans(), 2100, 'the 10 out are neither in the spool nor dropped: the reader has them');
      s.ack(out); // a no-op now
      assert.equal(drain(s).length, s.opened.records + 2100 - dropped - 10);
    });
  });

  describe('the directory', () => {
    it('should create a missing directory', () => {
      const { s } = spool({ sub: 'a/b/c' });
      assert.ok(fs.statSync(s.dir).isDirectory());
    });

    it('should refuse a file, or a path through one, in one line', () => {
      const file = path.join(dir, 'plain');
      fs.writeFileSync(file, '');
      assert.throws(() => openSpanSpool({ dir: file, maxBytes: 1 << 20, codec: numbers() }),
        (e: Error) => e instanceof SpoolError && e.message === 'it is not a directory; name a directory (it is created when missing)');
      assert.throws(() => openSpanSpool({ dir: path.join(file, 'spool'), maxBytes: 1 << 20, codec: numbers() }),
        { message: 'a part of the path is not a directory; choose another path' });
    });

    it('should refuse a directory its user may not write in', async function () {
      if (process.getuid?.() !== 0) this.skip();
      const locked = path.join(dir, 'locked');
      fs.mkdirSync(locked, { mode: 0o755 });
      fs.chmodSync(dir, 0o755);
      const script = `const { openSpanSpool } = require(${JSON.stringify(path.resolve(__dirname, '../src/export/span-spool.js'))});
        try { openSpanSpool({ dir: ${JSON.stringify(locked)}, maxBytes: 1 << 20, codec: {} }); } catch (e) { process.stdout.write(e.message); }`;
      const child = spawn(process.execPath, ['-e', script], { uid: 65534, gid: 65534, stdio: ['ignore', 'pipe', 'inherit'] });
      let out = '';
      child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
      await new Promise((r) => child.on('exit', r));
      assert.equal(out, "cannot write in it (EACCES): tcpspan's user may not write there; grant it write access or choose another path");
    });

    it('should refuse a directory another running tcpspan uses', async () => {
      const d = path.join(dir, 'spool');
      fs.mkdirSync(d);
      // a live process whose command line says tcpspan
      const other = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', 'tcpspan'], { stdio: 'ignore' });
      try {
        fs.writeFileSync(path.join(d, 'lock'), `${other.pid}\n`);
        assert.throws(() => openSpanSpool({ dir: d, maxBytes: 1 << 20, codec: numbers() }),
          { message: `another tcpspan (pid ${other.pid}) uses it; give each tcpspan its own spool directory` });
      } finally {
        other.kill('SIGKILL');
      }
      await new Promise((r) => other.on('exit', r));
      const s = openSpanSpool({ dir: d, maxBytes: 1 << 20, codec: numbers() }); // a stale lock is taken over
      open.push(s);
    });
  });
});

describe('encoded span records', () => {
  it('should give back the bytes and the owner (service, container, pod) a span was spooled with', () => {
    const codec = createEncodedSpanCodec();
    const owners = createSpanOwners();
    for (const owner of [undefined, owners.of('checkout', undefined, undefined), owners.of('cart', 'c'.repeat(64), '1b4e28ba-2fa1-11d2-883f-0016d3cca427'),
      owners.of(undefined, undefined, 'pod-ü')]) {
      const span = { bytes: Buffer.from([0x12, 0x03, 1, 2, 3]), owner };
      const buf = Buffer.alloc(codec.size(span));
      codec.write(span, buf, 0);
      const back = codec.read(buf);
      assert.deepEqual({ bytes: Buffer.from(back.bytes), owner: back.owner }, { bytes: Buffer.from(span.bytes), owner });
    }
    assert.throws(() => codec.read(Buffer.from([9, 1, 2])), /not an encoded span record/);
  });
});

// ---------------------------------------------------------------- the queue with a spool

/** An exporter of numbers: fails with UNAVAILABLE while `down`, records what it accepted. */
function collector() {
  const c = {
    down: true, calls: 0, failed: 0, got: [] as number[],
    /** fail this share of calls at random even when up */
    flaky: 0,
    exporter: {
      export(items: number[], cb: (r: ExportResult) => void): void {
        c.calls++;
        const fail = c.down || Math.random() < c.flaky;
        if (fail) c.failed++;
        setImmediate(() => {
          if (fail) cb({ code: ExportResultCode.FAILED, error: Object.assign(new Error('14 UNAVAILABLE: no connection'), { code: grpc.status.UNAVAILABLE, metadata: {} }) });
          else { c.got.push(...items); cb({ code: ExportResultCode.SUCCESS }); }
        });
      },
      shutdown: async () => undefined,
    } satisfies BatchExporter<number>,
  };
  return c;
}

async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('until: condition not met in time');
    await new Promise((r) => setTimeout(r, 5));
  }
}

const QUEUE: SpanExportQueueOptions<number> = {
  maxQueueSize: 5000, maxExportBatchSize: 100, scheduledDelayMs: 10, exportTimeoutMs: 2000,
  maxRetries: 2, retryInitialDelayMs: 5, retryMaxDelayMs: 40,
};

describe('SpanExportQueue with a spool', () => {
  let dir: string;
  beforeEach(() => { dir = fs.mkdtempSync(path.join(tmpdir(), 'tcpspan-qspool-')); });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  function queue(c: ReturnType<typeof collector>, opts: Partial<SpanExportQueueOptions<number>> & { maxBytes?: number; pad?: number } = {}) {
    const spool = openSpanSpool({ dir, maxBytes: opts.maxBytes ?? 8 << 20, codec: numbers(opts.pad) });
    const dropped: Record<string, number> = {};
    const log: string[] = [];
    const q = createSpanExportQueue(c.exporter, {
      ...QUEUE, ...opts, spool, log: (m) => log.push(m), onDropped: (n, r: SpanDropReason) => { dropped[r] = (dropped[r] ?? 0) + n; },
    });
    return { q, spool, dropped, log };
  }

  it('should keep every span through an outage far past maxRetries, and deliver each once, in order', async () => {
    const c = collector();
    const { q, spool, dropped, log } = queue(c);
    for (const i of range(0, 1000)) q.add(i);
    await until(() => spool.spans() === 1000 && q.stats().queued === 0);
    await until(() => c.calls >= 20); // retries go on: maxRetries (2) does not apply with a spool
    assert.equal(q.stats().dropped.export_failed, 0);
    for (const i of range(1000, 500)) q.add(i); // new spans follow the others to disk
    await until(() => spool.spans() === 1500);
    c.down = false;
    await until(() => c.got.length === 1500);
    assert.deepEqual(c.got, range(0, 1500));
    await q.shutdown(1000);
    assert.deepEqual(dropped, {});
    assert.deepEqual(q.stats().spool, { spooled: 1500, replayed: 0, spans: 0, bytes: 0 });
    assert.deepEqual(fs.readdirSync(dir).filter((f) => f.endsWith('.seg')), []);
    assert.match(log.join('\n'), /export failed \(14 UNAVAILABLE: no connection\); spooling to .* and retrying until the collector takes them/);
    assert.match(log.join('\n'), /spool .* is empty again: every span written to it since it last was \(1500\) is delivered or counted/);
  });

  it('should put what it holds at the shutdown deadline in the spool, not drop it, and send it first after a restart', async () => {
    const c = collector();
    const a = queue(c);
    for (const i of range(0, 300)) a.q.add(i);
    await new Promise((r) => setTimeout(r, 1)); // the first call is out
    await a.q.shutdown(50);
    assert.deepEqual(a.dropped, {}, 'spooled, not dropped');
    assert.deepEqual(a.q.stats().spool, { spooled: 300, replayed: 0, spans: 300, bytes: a.spool.bytes() });

    c.down = false;
    const b = queue(c);
    assert.equal(b.q.stats().spool!.replayed, 300);
    for (const i of range(300, 50)) b.q.add(i);
    await b.q.forceFlush(5000);
    assert.deepEqual(c.got, range(0, 350), 'the earlier run\'s spans first, each once');
    await b.q.shutdown(1000);
    assert.deepEqual(b.q.stats().spool!.spans, 0);
  });

  it('should drop the oldest spans when the spool is full, counting them as spool_full, and deliver the rest', async () => {
    const c = collector();
    const { q, dropped } = queue(c, { maxBytes: 1 << 20, pad: 1000 }); // ~1000 records fit
    for (const i of range(0, 3000)) q.add(i);
    await until(() => (dropped['spool_full'] ?? 0) > 0 && q.stats().queued === 0);
    c.down = false;
    await q.forceFlush(10_000);
    const full = dropped['spool_full']!;
    assert.equal(c.got.length + full, 3000);
    assert.equal(new Set(c.got).size, c.got.length, 'none twice');
    assert.deepEqual(c.got.slice(-100), range(2900, 100), 'the newest kept');
    await q.shutdown(1000);
  });

  it('should account for every span exactly once under random failures, a small spool and restarts', async () => {
    const c = collector();
    c.down = false;
    c.flaky = 0.4;
    let made = 0, replayedTotal = 0;
    const dropped: Record<string, number> = {};
    for (let run = 0; run < 3; run++) {
      const r = queue(c, { maxBytes: 8 << 20, pad: 600, maxQueueSize: 1000 });
      replayedTotal += r.q.stats().spool!.replayed;
      for (let k = 0; k < 20; k++) {
        for (let i = 0; i < 100; i++) r.q.add(made + i);
        made += 100;
        await new Promise((res) => setTimeout(res, 5));
      }
      await r.q.shutdown(20); // a short deadline: some goes to the spool, for the next run
      for (const [k, n] of Object.entries(r.dropped)) dropped[k] = (dropped[k] ?? 0) + n;
      if (run === 2) {
        const left = r.q.stats().spool!.spans;
        const droppedTotal = Object.values(dropped).reduce((a, b) => a + b, 0);
        // every span made: delivered, dropped with a reason, or in the spool for the next run
        const delivered = new Set(c.got).size;
        assert.equal(delivered + droppedTotal + left, made, JSON.stringify({ delivered, dropped, left, made, replayedTotal }));
      }
    }
    assert.ok(c.failed > 0, 'the collector failed no call: the test did not exercise retries');
    // a last run against a healthy collector drains what the others left: how much the three runs
    // delivered depends on the machine's speed, the sum does not
    c.flaky = 0;
    const last = queue(c, { maxBytes: 8 << 20, pad: 600, maxQueueSize: 1000 });
    await until(() => last.q.stats().spool!.spans === 0, 60_000);
    await last.q.shutdown(1000);
    for (const [k, n] of Object.entries(last.dropped)) dropped[k] = (dropped[k] ?? 0) + n;
    const droppedTotal = Object.values(dropped).reduce((a, b) => a + b, 0);
    assert.equal(new Set(c.got).size + droppedTotal, made, JSON.stringify({ delivered: new Set(c.got).size, dropped, made }));
    // twice only in the documented window: a batch whose call was out at a shutdown, spooled, and
    // answered after (at most one batch a run)
    assert.ok(c.got.length - new Set(c.got).size <= 3 * QUEUE.maxExportBatchSize, `${c.got.length - new Set(c.got).size} twice`);
    // with 8 MiB of spool only a full queue may refuse spans (when the spool writes fall behind)
    assert.deepEqual(Object.keys(dropped).filter((k) => k !== 'queue_full'), []);
  });
});
