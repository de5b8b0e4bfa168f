// Zero-copy reader of a BPF ring buffer (BPF_MAP_TYPE_RINGBUF), mapped into this process.
//
// The layout is the kernel's (kernel/bpf/ringbuf.c): a consumer page we may
// write, then a producer page and the data area, read-only, with the data area
// mapped twice in a row so a record that wraps around the end reads as one
// piece. Each record has an 8-byte header: length, BUSY bit (still being
// written) and DISCARD bit; records are 8-byte aligned.
import koffi from 'koffi';
import * as libc from './libc.js';
import { recordMemory, type RecordMemory } from '../decode/event.js';

const HDR_SIZE = 8;
const BUSY_BIT = 0x80000000;
const DISCARD_BIT = 0x40000000;
const LEN_MASK = 0x3fffffff;

export type RecordHandler = (memory: RecordMemory, offset: number, length: number) => void;

export interface RingBuffer {
  readonly fd: number;
  readonly size: number;
  readonly memory: RecordMemory;
  /** Hands every committed record to `handler`, then frees their space. Returns how many. */
  drain(handler: RecordHandler, maxRecords?: number): number;
  /** Bytes written by the kernel and not yet consumed. */
  pending(): number;
  /** Exceptions thrown by a handler (counted, never propagated). */
  readonly handlerErrors: number;
  close(): void;
}

export function openRingBuffer(mapFd: number, size: number): RingBuffer {
  const page = libc.getpagesize();
  const consumerPtr = libc.mmap(null, page, libc.PROT_READ | libc.PROT_WRITE, libc.MAP_SHARED, mapFd, 0);
  if (consumerPtr === null || consumerPtr === libc.MAP_FAILED) {
    throw new Error(`cannot map the ring buffer's consumer page: ${libc.strerror(libc.errno())}`);
  }
  const dataLen = page + 2 * size;
  const producerPtr = libc.mmap(null, dataLen, libc.PROT_READ, libc.MAP_SHARED, mapFd, page);
  if (producerPtr === null || producerPtr === libc.MAP_FAILED) {
    const err = libc.errno();
    libc.munmap(consumerPtr, page);
    throw new Error(`cannot map the ring buffer's data (${dataLen} bytes): ${libc.strerror(err)}`);
  }
  return new MappedRingBuffer(mapFd, size, page, consumerPtr, producerPtr);
}

class MappedRingBuffer implements RingBuffer {
  readonly memory: RecordMemory;
  handlerErrors = 0;
  private readonly _consumerPos: BigUint64Array;
  private readonly _producerPos: BigUint64Array;
  private _cons: number;
  private _closed = false;

  constructor(
    readonly fd: number,
    readonly size: number,
    private readonly _page: number,
    private readonly _consumerPtr: bigint,
    private readonly _producerPtr: bigint,
  ) {
    this._consumerPos = new BigUint64Array(koffi.view(_consumerPtr, 8));
    // never write through these views: the mapping is read-only and a write kills the process
    this._producerPos = new BigUint64Array(koffi.view(_producerPtr, 8));
    // the data area alone, so a record's offset is its position in the ring
    this.memory = recordMemory(koffi.view(_producerPtr + BigInt(_page), 2 * size));
    this._cons = Number(Atomics.load(this._consumerPos, 0));
  }

  pending(): number {
    if (this._closed) return 0;
    return Number(Atomics.load(this._producerPos, 0)) - this._cons;
  }

  drain(handler: RecordHandler, maxRecords = 1 << 20): number {
    if (this._closed) return 0;
    const i32 = this.memory.i32;
    const size = this.size;
    let cons = this._cons;
    let n = 0;
    outer: for (;;) {
      const prod = Number(Atomics.load(this._producerPos, 0));
      if (cons >= prod) break;
      while (cons < prod) {
        const off = cons % size;
        const hdr = Atomics.load(i32, off >> 2) >>> 0;
        if (hdr & BUSY_BIT) break outer; // still being written: next drain
        const len = hdr & LEN_MASK;
        if (!(hdr & DISCARD_BIT)) {
          try {
            handler(this.memory, off + HDR_SIZE, len);
          } catch {
            this.handlerErrors++;
          }
        }
        cons += (len + HDR_SIZE + 7) & ~7;
        if (++n >= maxRecords) break outer;
      }
    }
    if (cons !== this._cons) {
      this._cons = cons;
      // one release of the space per batch, not per record
      Atomics.store(this._consumerPos, 0, BigInt(cons));
    }
    return n;
  }

  close(): void {
    if (this._closed) return;
    this._closed = true;
    libc.munmap(this._producerPtr, this._page + 2 * this.size);
    libc.munmap(this._consumerPtr, this._page);
  }
}
