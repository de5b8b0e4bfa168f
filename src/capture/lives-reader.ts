// Reads the kernel's map of connection lives (bpf/tcpspan.bpf.c `lives`, sized by lives-map.ts)
// from user space: checkpoints of long-lived connections take their current counters here.
//
// The map is keyed by socket address, which user space does not know; a life carries its socket
// cookie. So a read looks up by key the lives whose key it learnt (one bpf() call each, the
// value's cookie checked: a freed socket's address may hold another socket's life), and copies
// the whole map out in batches (BPF_MAP_LOOKUP_BATCH, 1,024 lives per call) only when a wanted
// cookie has no key known, learning every life's key then. A long-lived end is found by the
// batch read once, then by its key at every later checkpoint.
import { libbpf } from './libbpf.js';
import { ERRNO } from './libc.js';
import { recordMemory, type RecordMemory } from '../decode/event.js';
import { CONN_LAYOUT, LIFE_LAYOUT } from '../decode/wire-layout.js';

/** Lives copied per batch call: one syscall per this many, where a key walk takes two per life. */
const BATCH = 1024;
const KEY_SIZE = 8;

export interface LivesRead {
  /** lives handed to the visitor */
  visited: number;
  /** lookups by a known key */
  lookups: number;
  /** batch calls made (a full read of the map, when a wanted cookie had no key known) */
  batchCalls: number;
  /** the errno that stopped a batch read early (the map is still readable next time); 0: none */
  error: number;
}

export interface LivesReader {
  /**
   * Hands each life whose socket cookie is in `cookies` to `visit` once, as a struct sock_info
   * at byte offset `off` of `m` (decode/event.ts decodeLife), valid during the call only. A
   * cookie without a life in the map is not visited. Never throws.
   */
  read(cookies: ReadonlyMap<number, unknown>, visit: (m: RecordMemory, off: number) => void): LivesRead;
  /**
   * The cookies of the lives whose Close has not been written (`closed` 0): the ends still
   * open, from one full read of the map. undefined when the read stopped early: no answer.
   */
  openCookies(): Set<number> | undefined;
}

/** A reader of the `lives` map behind `fd`, whose values are LIFE_LAYOUT.size bytes. */
export function createLivesReader(fd: number, maxKeys: number): LivesReader {
  const values = Buffer.from(new ArrayBuffer(BATCH * LIFE_LAYOUT.size));
  const memory = recordMemory(values.buffer as ArrayBuffer);
  const keys = Buffer.alloc(BATCH * KEY_SIZE);
  const key = Buffer.alloc(KEY_SIZE);
  // the hash map's batch token is a bucket index (u32); room for a u64 all the same
  const tokens = [Buffer.alloc(8), Buffer.alloc(8)];
  const count = Buffer.alloc(4);
  const wCookie = CONN_LAYOUT.fields.cookie.offset >> 2;
  const wClosed = LIFE_LAYOUT.fields.closed.offset >> 2;
  /** socket cookie -> map key (the socket's address), as the last batch read found them */
  let keyOf = new Map<number, bigint>();
  const cookieAt = (off: number): number => {
    const w = off >> 2;
    return memory.u32[w + wCookie]! + memory.u32[w + wCookie + 1]! * 4294967296;
  };
  const safeVisit = (visit: (m: RecordMemory, off: number) => void, off: number): void => {
    try {
      visit(memory, off);
    } catch {
      // a visitor's failure is its own (the correlator counts it); the read goes on
    }
  };

  return {
    read(cookies, visit) {
      const out: LivesRead = { visited: 0, lookups: 0, batchCalls: 0, error: 0 };
      let unknown = 0;
      for (const cookie of cookies.keys()) {
        const k = keyOf.get(cookie);
        if (k === undefined) {
          unknown++;
          continue;
        }
        key.writeBigUInt64LE(k, 0);
        out.lookups++;
        // the value lands at the start of the batch buffer
        if (libbpf.mapLookupElem(fd, key, values) === 0 && cookieAt(0) === cookie) {
          out.visited++;
          safeVisit(visit, 0);
        } else {
          keyOf.delete(cookie); // gone, or its address now holds another socket's life
          unknown++;
        }
      }
      if (unknown === 0) return out;
      // some wanted life has no key known: read the whole map, learning every key
      const learnt = new Map<number, bigint>();
      const read = readAll((off, i) => {
        const cookie = cookieAt(off);
        const known = keyOf.has(cookie);
        if (learnt.size < maxKeys) learnt.set(cookie, keys.readBigUInt64LE(i * KEY_SIZE));
        // visited above by its key, or not wanted
        if (known || !cookies.has(cookie)) return;
        out.visited++;
        safeVisit(visit, off);
      });
      out.batchCalls += read.calls;
      if (read.error !== 0) {
        out.error = read.error;
        return out;
      }
      keyOf = learnt;
      return out;
    },

    openCookies() {
      const open = new Set<number>();
      const read = readAll((off) => {
        if (memory.u32[(off >> 2) + wClosed] === 0) open.add(cookieAt(off));
      });
      return read.error === 0 ? open : undefined;
    },
  };

  /** Copies the whole map out in batches, handing `each` every life's offset in `values` and its index in `keys`. */
  function readAll(each: (off: number, i: number) => void): { calls: number; error: number } {
    let calls = 0;
    let inBatch: Buffer | null = null;
    for (let t = 0; ; t ^= 1) {
      count.writeUInt32LE(BATCH, 0);
      const rc = libbpf.mapLookupBatch(fd, inBatch, tokens[t]!, keys, values, count);
      calls++;
      if (rc !== 0 && rc !== -ERRNO.ENOENT) return { calls, error: -rc };
      const n = count.readUInt32LE(0);
      for (let i = 0; i < n; i++) each(i * LIFE_LAYOUT.size, i);
      if (rc === -ERRNO.ENOENT) return { calls, error: 0 }; // that was the last batch
      inBatch = tokens[t]!;
    }
  }
}
