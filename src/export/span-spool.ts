// A spool on disk for the export queue: spans that cannot be delivered now, kept in order across
// collector outages of any length (within a byte bound) and across restarts of tcpspan.
//
// Layout of export.spoolDir:
//   000000000007.seg   segments, append-only, numbered in write order; a process starts a new one
//   ack.json           how far the oldest segment was delivered: {"segment":7,"offset":123456}
//   lock               the pid of the tcpspan using the directory
//
// A segment is a 16-byte header (SEGMENT_MAGIC, version) and records:
//   u32 RECORD_MAGIC | u32 length | u32 crc32(length, payload) | payload (the codec's bytes)
// A record whose CRC does not match, or a region that does not parse (a truncated tail after a power
// loss, a damaged block), is skipped, resynchronising on the next RECORD_MAGIC whose record checks,
// and counted as spool_corrupt: one per record whose length was intact, one per region that was not
// (its records cannot be told apart, so that count is a lower bound). A file with a bad header is
// removed and counted once. Nothing in the directory can make opening fail but the directory itself.
//
// Durability: append() is one write() per segment it touches, so everything appended survives a
// SIGKILL of tcpspan (the page cache has it). fdatasync runs at most once a second while appends
// come, and at close: a power loss or kernel crash can lose the last second of appends. Delivery
// is recorded by deleting a segment once all its records are acknowledged, or by ack.json (written
// with rename, not synced) within the oldest one: after a crash, the batch in flight (sent, not yet
// acknowledged) is sent again. At-least-once across a crash, exactly-once within one process life.
//
// Bound: maxBytes over all segment files. Segments are maxBytes/16 (64 KiB to 8 MiB); when an
// append needs room, the oldest segment goes, its undelivered records counted as spool_full.
import fs from 'node:fs';
import path from 'node:path';
import { crc32 } from 'node:zlib';

/** How the spool turns a queue item into a record's payload and back. */
export interface SpoolCodec<T> {
  /** the payload's length in bytes */
  size(item: T): number;
  /** writes the payload at buf[off, off + size(item)) */
  write(item: T, buf: Buffer, off: number): void;
  /** the item from its payload; the payload is a view into a buffer the item may keep */
  read(payload: Buffer): T;
}

export type SpoolDropReason = 'spool_full' | 'spool_corrupt';

/** Records handed out by read(), delivered (or given up) with ack(). */
export interface SpoolBatch<T> {
  readonly items: T[];
  /**
   * True once the records left the spool while the batch was out (their segment was removed for
   * room): ack() is then a no-op and the caller holds the only copy.
   */
  readonly detached: boolean;
}

export interface SpoolOpenInfo {
  /** records found from earlier runs, not yet delivered: sent before anything new */
  records: number;
  bytes: number;
  /** damaged records and regions skipped (and removed files), counted as spool_corrupt */
  corrupt: number;
  /** one line each: what was skipped and why */
  notes: string[];
}

export interface SpanSpool<T> {
  readonly dir: string;
  readonly maxBytes: number;
  /** What open() found from earlier runs. */
  readonly opened: SpoolOpenInfo;
  /**
   * Appends items in order; returns how many were written (a prefix: the rest could not be, e.g. a
   * full disk, and stay the caller's). Makes room by removing the oldest segments, reporting
   * their undelivered records to onDrop. Never throws.
   */
  append(items: readonly T[]): number;
  /** Up to max records after those already out, from one segment; undefined when none. One batch out at a time. */
  read(max: number): SpoolBatch<T> | undefined;
  /** The batch was delivered (or given up): its records leave the spool. */
  ack(batch: SpoolBatch<T>): void;
  /** Records in the spool, the batch out included. */
  spans(): number;
  /** Records not handed out yet. */
  unread(): number;
  /** Bytes of its segment files. */
  bytes(): number;
  /** The last append's error while appends fail; undefined otherwise. */
  failing(): string | undefined;
  /**
   * Where dropped records are reported: the oldest removed for room (spool_full), damaged ones
   * (spool_corrupt). Drops found before a listener is set (when opening) are reported to it at once.
   */
  onDrop(listener: (n: number, reason: SpoolDropReason) => void): void;
  /** Syncs and closes; records not acknowledged stay for the next run. Idempotent. */
  close(): void;
}

export interface SpanSpoolOptions<T> {
  dir: string;
  maxBytes: number;
  codec: SpoolCodec<T>;
}

/** A spool directory that cannot be used: the message says why and the fix, in one line. */
export class SpoolError extends Error {
  override readonly name = 'SpoolError';
}

const SEGMENT_MAGIC = Buffer.from('TCPSPOOL');
const VERSION = 1;
const HEADER_BYTES = 16;
const RECORD_MAGIC = 0x5350_4c31; // 'SPL1'
const RECORD_MAGIC_BYTES = Buffer.from([0x53, 0x50, 0x4c, 0x31]);
const RECORD_HEAD = 12;
/** a record longer than this is damage, not a span */
export const MAX_RECORD_BYTES = 16 * 1024 * 1024;
const SEGMENT_NAME = /^(\d{12})\.seg$/;
const MIN_SEGMENT = 64 * 1024, MAX_SEGMENT = 8 * 1024 * 1024;
/** Bytes read per batch at most (a batch stops at a record that does not fit, unless it is the first). */
const READ_CHUNK = 4 * 1024 * 1024;
const SYNC_INTERVAL_MS = 1000;

export function segmentBytesFor(maxBytes: number): number {
  return Math.max(MIN_SEGMENT, Math.min(MAX_SEGMENT, Math.floor(maxBytes / 16)));
}

/**
 * Opens (creating it when missing) a spool directory, reading what earlier runs left. Throws a
 * SpoolError naming the problem when the directory cannot be used: not a directory, not writable,
 * or used by another running tcpspan.
 */
export function openSpanSpool<T>(opts: SpanSpoolOptions<T>): SpanSpool<T> {
  return new DiskSpool<T>(opts);
}

/** What a spool directory holds, read without locking or changing it (for tests and tools). */
export function inspectSpool(dir: string): { records: number; bytes: number; corrupt: number; segments: number } {
  const ack = readAck(dir);
  let records = 0, bytes = 0, corrupt = 0, segments = 0;
  for (const { id, file } of listSegments(dir)) {
    const data = fs.readFileSync(file);
    bytes += data.length;
    segments++;
    const scan = scanSegment(data, ack !== undefined && ack.segment === id ? ack.offset : HEADER_BYTES);
    records += scan.records;
    corrupt += scan.corrupt;
  }
  return { records, bytes, corrupt, segments };
}

// ------------------------------------------------------------------ record format

/** The record at `p` when it is whole and checks: its payload's end; else -1. */
function recordAt(data: Buffer, p: number, end: number): number {
  if (p + RECORD_HEAD > end || data.readUInt32BE(p) !== RECORD_MAGIC) return -1;
  const len = data.readUInt32LE(p + 4);
  if (len > MAX_RECORD_BYTES || p + RECORD_HEAD + len > end) return -1;
  const crc = crc32(data.subarray(p + RECORD_HEAD, p + RECORD_HEAD + len), crc32(data.subarray(p + 4, p + 8)));
  return crc === data.readUInt32LE(p + 8) ? p + RECORD_HEAD + len : -1;
}

/** With more bytes beyond `end`: the record at `p` may be whole there, so cannot be judged here. */
function cutOff(data: Buffer, p: number, end: number): boolean {
  if (p + RECORD_HEAD > end) return true;
  if (data.readUInt32BE(p) !== RECORD_MAGIC) return false;
  const len = data.readUInt32LE(p + 4);
  return len <= MAX_RECORD_BYTES && p + RECORD_HEAD + len > end;
}

/**
 * Walks records from `p` to `end`, calling `each` with every good payload's bounds; damaged
 * stretches are skipped (resynchronising on the next record that checks) and counted. `more`:
 * the data goes on beyond `end` (a chunk of a segment), so a record cut off at `end` ends the walk.
 */
function walk(data: Buffer, p: number, end: number, more: boolean, each: ((from: number, to: number) => boolean) | undefined):
{ next: number; records: number; corrupt: number } {
  let records = 0, corrupt = 0;
  while (p < end) {
    if (more && cutOff(data, p, end)) break;
    const to = recordAt(data, p, end);
    if (to >= 0) {
      if (each !== undefined && !each(p + RECORD_HEAD, to)) break;
      records++;
      p = to;
      continue;
    }
    // a damaged record or stretch: one record lost at least
    corrupt++;
    let q = p + 1;
    for (;;) {
      q = data.indexOf(RECORD_MAGIC_BYTES, q);
      if (q < 0 || q >= end) { q = end; break; }
      if ((more && cutOff(data, q, end)) || recordAt(data, q, end) >= 0) break;
      q++;
    }
    p = q;
  }
  return { next: p, records, corrupt };
}

function scanSegment(data: Buffer, from: number): { records: number; corrupt: number; badHeader: boolean } {
  if (data.length < HEADER_BYTES || !data.subarray(0, 8).equals(SEGMENT_MAGIC) || data.readUInt32LE(8) !== VERSION) {
    return { records: 0, corrupt: 1, badHeader: true };
  }
  const { records, corrupt } = walk(data, Math.max(HEADER_BYTES, from), data.length, false, undefined);
  return { records, corrupt, badHeader: false };
}

function listSegments(dir: string): { id: number; file: string }[] {
  return fs.readdirSync(dir).flatMap((name) => {
    const m = SEGMENT_NAME.exec(name);
    return m ? [{ id: Number(m[1]), file: path.join(dir, name) }] : [];
  }).sort((a, b) => a.id - b.id);
}

interface Ack { segment: number; offset: number }

function readAck(dir: string): Ack | undefined {
  try {
    const a = JSON.parse(fs.readFileSync(path.join(dir, 'ack.json'), 'utf8')) as Partial<Ack>;
    if (Number.isSafeInteger(a.segment) && Number.isSafeInteger(a.offset)) return { segment: a.segment!, offset: a.offset! };
  } catch { /* none, or damaged: everything not deleted is sent again (at least once) */ }
  return undefined;
}

const segmentName = (id: number): string => `${String(id).padStart(12, '0')}.seg`;

function errnoText(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ?? e.message;
}

// ------------------------------------------------------------------ the spool

interface Segment {
  id: number;
  file: string;
  /** bytes in the file (records written end there) */
  size: number;
  /** good records not yet acknowledged */
  records: number;
  /** where the next unacknowledged record starts */
  ackOffset: number;
  /** left by an earlier run: its damage was counted when opening, and `records` counts good ones only */
  earlier: boolean;
}

interface Out<T> extends SpoolBatch<T> {
  detached: boolean;
  seg: Segment;
  /** offset after its last record */
  to: number;
  /** records of the segment it covers (good ones, and damaged ones met on the way, counted already) */
  n: number;
}

class DiskSpool<T> implements SpanSpool<T> {
  readonly dir: string;
  readonly maxBytes: number;
  readonly opened: SpoolOpenInfo;
  private readonly _codec: SpoolCodec<T>;
  private _listener: ((n: number, reason: SpoolDropReason) => void) | undefined;
  /** drops before a listener was set */
  private readonly _pending: [number, SpoolDropReason][] = [];
  private readonly _segmentBytes: number;
  private readonly _segments: Segment[] = [];
  private _nextId: number;
  /** the segment appends go to, open */
  private _tail: { seg: Segment; fd: number } | undefined;
  private _out: Out<T> | undefined;
  private _records = 0;
  private _bytes = 0;
  private _dirty = false;
  private _lastSync = 0;
  private _syncTimer: NodeJS.Timeout | undefined;
  private _failing: string | undefined;
  private _closed = false;

  constructor(opts: SpanSpoolOptions<T>) {
    this.dir = path.resolve(opts.dir);
    this.maxBytes = opts.maxBytes;
    this._codec = opts.codec;
    this._segmentBytes = segmentBytesFor(opts.maxBytes);
    prepareDir(this.dir);
    takeLock(this.dir);
    const info: SpoolOpenInfo = { records: 0, bytes: 0, corrupt: 0, notes: [] };
    const ack = readAck(this.dir);
    let last = 0;
    for (const { id, file } of listSegments(this.dir)) {
      last = id;
      if (ack !== undefined && id < ack.segment) { // delivered before the crash, not yet deleted
        fs.rmSync(file, { force: true });
        continue;
      }
      let data: Buffer;
      try {
        data = fs.readFileSync(file);
      } catch (err) {
        info.corrupt++;
        info.notes.push(`${file}: cannot read it (${errnoText(err)}); skipped`);
        continue;
      }
      const from = ack !== undefined && ack.segment === id ? Math.max(HEADER_BYTES, ack.offset) : HEADER_BYTES;
      const scan = scanSegment(data, from);
      if (scan.badHeader) {
        info.corrupt++;
        info.notes.push(`${file}: not a spool segment (bad header, ${data.length} bytes); removed`);
        fs.rmSync(file, { force: true });
        continue;
      }
      if (scan.corrupt > 0) info.notes.push(`${file}: ${scan.corrupt} damaged record(s) or stretch(es) skipped`);
      info.corrupt += scan.corrupt;
      if (scan.records === 0) { // nothing left to send in it
        fs.rmSync(file, { force: true });
        continue;
      }
      this._segments.push({ id, file, size: data.length, records: scan.records, ackOffset: from, earlier: true });
      this._records += scan.records;
      this._bytes += data.length;
      info.records += scan.records;
      info.bytes += data.length;
    }
    // never a number ack.json may still name: that segment would count as delivered
    this._nextId = Math.max(last, ack?.segment ?? 0) + 1;
    this.opened = info;
    if (info.corrupt > 0) this._drop(info.corrupt, 'spool_corrupt');
    // segments that an earlier, smaller bound no longer admits
    this._makeRoom(0);
  }

  spans(): number { return this._records; }
  unread(): number { return this._records - (this._out !== undefined && !this._out.detached ? this._out.n : 0); }
  bytes(): number { return this._bytes; }
  failing(): string | undefined { return this._failing; }

  onDrop(listener: (n: number, reason: SpoolDropReason) => void): void {
    this._listener = listener;
    for (const [n, reason] of this._pending.splice(0)) listener(n, reason);
  }

  private _drop(n: number, reason: SpoolDropReason): void {
    if (this._listener === undefined) this._pending.push([n, reason]);
    else {
      try { this._listener(n, reason); } catch { /* the caller's bug */ }
    }
  }

  // ---------------------------------------------------------------- writing

  append(items: readonly T[]): number {
    if (this._closed) return 0;
    let done = 0;
    try {
      while (done < items.length) {
        // one chunk: the records that fit the tail segment (at least one, in a fresh segment)
        if (this._tail === undefined || this._tail.seg.size >= this._segmentBytes) this._rotate();
        const tail = this._tail!;
        const room = this._segmentBytes - tail.seg.size;
        const sizes: number[] = [];
        let bytes = 0;
        for (let i = done; i < items.length; i++) {
          const len = this._codec.size(items[i]!);
          const rec = RECORD_HEAD + len;
          if (len > MAX_RECORD_BYTES || rec > this.maxBytes / 2) { // can never be spooled
            if (i === done) { sizes.push(-1); break; }
            break;
          }
          if (sizes.length > 0 && bytes + rec > room) break;
          sizes.push(len);
          bytes += rec;
        }
        if (sizes[0] === -1) {
          this._drop(1, 'spool_full');
          done++;
          continue;
        }
        if (tail.seg.size + bytes > this._segmentBytes && tail.seg.size > HEADER_BYTES) { this._rotate(); continue; }
        this._makeRoom(bytes);
        if (this._tail !== tail) continue; // room was made by removing the tail itself
        const buf = Buffer.allocUnsafe(bytes);
        let p = 0;
        for (let k = 0; k < sizes.length; k++) {
          const len = sizes[k]!;
          buf.writeUInt32BE(RECORD_MAGIC, p);
          buf.writeUInt32LE(len, p + 4);
          this._codec.write(items[done + k]!, buf, p + RECORD_HEAD);
          buf.writeUInt32LE(crc32(buf.subarray(p + RECORD_HEAD, p + RECORD_HEAD + len), crc32(buf.subarray(p + 4, p + 8))), p + 8);
          p += RECORD_HEAD + len;
        }
        this._write(tail, buf);
        tail.seg.records += sizes.length;
        this._records += sizes.length;
        done += sizes.length;
      }
      this._failing = undefined;
    } catch (err) {
      this._failing = `cannot write to the spool ${this.dir}: ${(err as Error).message}`;
    }
    if (done > 0) this._scheduleSync();
    return done;
  }

  /** Writes all of buf at the tail's end, or nothing: a partial write is cut off again. */
  private _write(tail: { seg: Segment; fd: number }, buf: Buffer): void {
    const at = tail.seg.size;
    try {
      let off = 0;
      while (off < buf.length) off += fs.writeSync(tail.fd, buf, off, buf.length - off, at + off);
    } catch (err) {
      try { fs.ftruncateSync(tail.fd, at); } catch { /* the record is then damaged, and skipped when read */ }
      throw err;
    }
    tail.seg.size += buf.length;
    this._bytes += buf.length;
    this._dirty = true;
  }

  /** A new tail segment; the old one is synced and closed. */
  private _rotate(): void {
    this._closeTail();
    const id = this._nextId++;
    const file = path.join(this.dir, segmentName(id));
    const fd = fs.openSync(file, 'wx+', 0o600); // read too: batches are read from the tail
    const head = Buffer.alloc(HEADER_BYTES);
    SEGMENT_MAGIC.copy(head, 0);
    head.writeUInt32LE(VERSION, 8);
    const seg: Segment = { id, file, size: 0, records: 0, ackOffset: HEADER_BYTES, earlier: false };
    this._segments.push(seg);
    this._tail = { seg, fd };
    this._write(this._tail, head);
    syncDir(this.dir); // the new name survives a power loss
  }

  private _closeTail(): void {
    if (this._tail === undefined) return;
    const { fd } = this._tail;
    this._tail = undefined;
    try { if (this._dirty) fs.fdatasyncSync(fd); } catch { /* reported by the next write, if the disk is gone */ }
    fs.closeSync(fd);
    this._dirty = false;
    this._lastSync = Date.now();
  }

  /** Removes the oldest segments until `need` more bytes fit under maxBytes. */
  private _makeRoom(need: number): void {
    while (this._bytes + need > this.maxBytes && this._segments.length > 0) {
      const oldest = this._segments[0]!;
      if (this._tail?.seg === oldest) {
        if (oldest.records === 0 && oldest.size <= HEADER_BYTES) break;
        this._closeTail(); // the next append opens a new one
      }
      let lost = oldest.records;
      const out = this._out;
      if (out !== undefined && out.seg === oldest && !out.detached) {
        lost -= out.n;
        out.detached = true; // its records are the caller's alone now
      }
      this._removeHead();
      if (lost > 0) this._drop(lost, 'spool_full');
    }
  }

  private _removeHead(): void {
    const seg = this._segments.shift()!;
    this._records -= seg.records;
    this._bytes -= seg.size;
    fs.rmSync(seg.file, { force: true });
  }

  private _scheduleSync(): void {
    if (this._syncTimer !== undefined || !this._dirty) return;
    const wait = Math.max(0, this._lastSync + SYNC_INTERVAL_MS - Date.now());
    this._syncTimer = setTimeout(() => { this._syncTimer = undefined; this._sync(); }, wait);
    this._syncTimer.unref();
  }

  private _sync(): void {
    if (this._tail === undefined || !this._dirty) return;
    try {
      fs.fdatasyncSync(this._tail.fd);
      this._dirty = false;
    } catch (err) {
      this._failing = `cannot sync the spool ${this.dir}: ${(err as Error).message}`;
    }
    this._lastSync = Date.now();
  }

  // ---------------------------------------------------------------- reading

  read(max: number): SpoolBatch<T> | undefined {
    if (this._closed || (this._out !== undefined && !this._out.detached)) return undefined;
    this._out = undefined;
    const seg = this._segments.find((s) => s.records > 0);
    if (seg === undefined) return undefined;
    const from = seg.ackOffset;
    const length = Math.min(seg.size - from, READ_CHUNK);
    let data = Buffer.allocUnsafe(length);
    let fd: number | undefined;
    try {
      fd = this._tail?.seg === seg ? this._tail.fd : fs.openSync(seg.file, 'r');
      readFully(fd, data, from);
      // a first record longer than the chunk: read it whole
      if (length >= RECORD_HEAD && data.readUInt32BE(0) === RECORD_MAGIC) {
        const whole = RECORD_HEAD + data.readUInt32LE(4);
        if (whole > length && whole <= seg.size - from && whole <= RECORD_HEAD + MAX_RECORD_BYTES) {
          data = Buffer.allocUnsafe(whole);
          readFully(fd, data, from);
        }
      }
    } catch {
      // unreadable now (the disk went away): its records cannot be sent
      if (fd !== undefined && this._tail?.seg !== seg) fs.closeSync(fd);
      this._lose(seg);
      return this.read(max);
    }
    if (this._tail?.seg !== seg) fs.closeSync(fd);
    const items: T[] = [];
    let bad = 0;
    const more = from + data.length < seg.size;
    const take = (a: number, b: number): boolean => {
      if (items.length >= max) return false;
      try {
        items.push(this._codec.read(data.subarray(a, b)));
      } catch {
        bad++; // checked, but not what the codec wrote: damage all the same
      }
      return true;
    };
    let walked = walk(data, 0, data.length, more, take);
    if (walked.next === 0 && walked.records === 0 && walked.corrupt === 0) {
      // a first record that claims more than the segment holds: damage, judged within what was read
      walked = walk(data, 0, data.length, false, take);
    }
    // records of the segment this batch covers: the good ones, and (in this run's segments, whose
    // count includes every record written) the damaged ones, counted as lost now
    let n = items.length + bad + (seg.earlier ? 0 : walked.corrupt);
    if (from + walked.next >= seg.size) n = seg.records; // its end: none can be left
    n = Math.min(n, seg.records);
    const lost = n - items.length;
    if (lost > 0) this._drop(lost, 'spool_corrupt');
    const out: Out<T> = { items, detached: false, seg, to: from + walked.next, n };
    if (items.length === 0) {
      // nothing usable here: move past it
      seg.ackOffset = out.to;
      seg.records -= n;
      this._records -= n;
      if (walked.next === 0) this._lose(seg); // no progress possible
      else this._afterAck(seg);
      return this.read(max);
    }
    this._out = out;
    return out;
  }

  /** A segment that cannot be read any more: its records are lost, counted. */
  private _lose(seg: Segment): void {
    const n = seg.records;
    seg.records = 0;
    seg.ackOffset = seg.size;
    this._records -= n;
    if (n > 0) this._drop(n, 'spool_corrupt');
    this._afterAck(seg);
  }

  ack(batch: SpoolBatch<T>): void {
    const out = batch as Out<T>;
    if (out !== this._out) return;
    this._out = undefined;
    if (out.detached) return;
    const seg = out.seg;
    seg.ackOffset = out.to;
    seg.records -= out.n;
    this._records -= out.n;
    this._afterAck(seg);
  }

  /** Removes a fully delivered segment, or records how far the oldest one is delivered. */
  private _afterAck(seg: Segment): void {
    if (seg.records > 0 || (this._tail?.seg === seg && this._records > 0)) {
      if (seg === this._segments[0]) this._writeAck(seg);
      return;
    }
    if (this._tail?.seg === seg) this._closeTail();
    const i = this._segments.indexOf(seg);
    if (i < 0) return;
    this._segments.splice(i, 1);
    this._bytes -= seg.size;
    fs.rmSync(seg.file, { force: true });
    // empty: nothing for ack.json to say (the next segment's number is higher than any it named)
    if (this._segments.length === 0) fs.rmSync(path.join(this.dir, 'ack.json'), { force: true });
  }

  private _writeAck(seg: Segment): void {
    const file = path.join(this.dir, 'ack.json');
    try {
      fs.writeFileSync(`${file}.tmp`, JSON.stringify({ segment: seg.id, offset: seg.ackOffset }));
      fs.renameSync(`${file}.tmp`, file);
    } catch { /* then it is sent again after a restart: at least once */ }
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    if (this._syncTimer !== undefined) clearTimeout(this._syncTimer);
    this._out = undefined;
    try { this._closeTail(); } catch { /* closing is best effort */ }
    const head = this._segments[0];
    if (head !== undefined && head.ackOffset > HEADER_BYTES) this._writeAck(head);
    fs.rmSync(path.join(this.dir, 'lock'), { force: true });
  }
}

function readFully(fd: number, buf: Buffer, at: number): void {
  let off = 0;
  while (off < buf.length) {
    const n = fs.readSync(fd, buf, off, buf.length - off, at + off);
    if (n === 0) throw new Error('short read');
    off += n;
  }
}

function syncDir(dir: string): void {
  let fd: number | undefined;
  try {
    fd = fs.openSync(dir, 'r');
    fs.fsyncSync(fd);
  } catch { /* some filesystems refuse fsync on a directory */ } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

// ------------------------------------------------------------------ the directory

/** Creates the directory when missing and checks it is one tcpspan can write in. */
function prepareDir(dir: string): void {
  let st: fs.Stats | undefined;
  try {
    st = fs.statSync(dir);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOTDIR') throw new SpoolError('a part of the path is not a directory; choose another path');
    if (code !== 'ENOENT') throw new SpoolError(`cannot look at it (${errnoText(err)}); choose another path`);
  }
  if (st !== undefined && !st.isDirectory()) throw new SpoolError('it is not a directory; name a directory (it is created when missing)');
  if (st === undefined) {
    try {
      fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      const fix = code === 'EACCES' ? "tcpspan's user may not create it; create it and grant that user write access"
        : code === 'ENOTDIR' || code === 'EEXIST' ? 'a part of the path is not a directory; choose another path'
          : code === 'EROFS' ? 'the filesystem is read-only; mount a writable volume there'
            : 'choose another path';
      throw new SpoolError(`cannot create it (${errnoText(err)}): ${fix}`);
    }
  }
  // written, not just access()-checked: root passes access() on a read-only mount
  const probe = path.join(dir, `.probe-${process.pid}`);
  try {
    fs.writeFileSync(probe, '');
    fs.rmSync(probe);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const fix = code === 'EROFS' ? 'the filesystem is read-only; mount a writable volume there'
      : code === 'ENOSPC' ? 'the filesystem is full; free space or choose another path'
        : "tcpspan's user may not write there; grant it write access or choose another path";
    throw new SpoolError(`cannot write in it (${errnoText(err)}): ${fix}`);
  }
}

/** One tcpspan per spool: two would send and delete each other's records. */
function takeLock(dir: string): void {
  const file = path.join(dir, 'lock');
  let pid: number | undefined;
  try {
    pid = Number(fs.readFileSync(file, 'utf8').trim());
  } catch { /* no lock */ }
  if (pid !== undefined && Number.isSafeInteger(pid) && pid > 0 && pid !== process.pid && isTcpspan(pid)) {
    throw new SpoolError(`another tcpspan (pid ${pid}) uses it; give each tcpspan its own spool directory`);
  }
  fs.writeFileSync(file, `${process.pid}\n`);
}

/** A live process that runs tcpspan (a stale lock's pid may since belong to another program). */
function isTcpspan(pid: number): boolean {
  try {
    const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return /tcpspan|cli\/main\.js/.test(cmd);
  } catch {
    return false;
  }
}

/** Free bytes on the spool's filesystem, for a warning when it cannot hold one segment. */
export function spoolFreeBytes(dir: string): number | undefined {
  try {
    const s = fs.statfsSync(dir);
    return s.bavail * s.bsize;
  } catch {
    return undefined;
  }
}
