// Reads the kernel's map of connection lives (bpf/tcpspan.bpf.c `lives`, sized by lives-map.ts)
// from user space: checkpoints of long-lived connections take their current counters here.
import { libbpf } from './libbpf.js';
import { ERRNO } from './libc.js';
import { recordMemory, type RecordMemory } from '../decode/event.js';
import { CONN_LAYOUT, LIFE_LAYOUT } from '../decode/wire-layout.js';

/** Lives copied per bpf() call: one syscall per this many, where a key walk takes two per life. */
const BATCH = 1024;
const KEY_SIZE = 8;

export interface LivesScan {
  /** lives the map held */
  lives: number;
  /** of those, lives handed to the visitor */
  visited: number;
  /** bpf() calls made */
  calls: number;
  /** the errno that stopped the scan early (the map is still readable next time); 0: none */
  error: number;
}

export interface LivesReader {
  /**
   * Copies the lives out of the map in batches (BPF_MAP_LOOKUP_BATCH) and hands each one whose
   * socket cookie `want` accepts to `visit`, as a struct sock_info at byte offset `off` of `m`
   * (decode/event.ts decodeLife), valid during the call only. Never throws.
   */
  scan(want: (cookie: number) => boolean, visit: (m: RecordMemory, off: number) => void): LivesScan;
}

/** A reader of the `lives` map behind `fd`, whose values are LIFE_LAYOUT.size bytes. */
export function createLivesReader(fd: number): LivesReader {
  const values = Buffer.from(new ArrayBuffer(BATCH * LIFE_LAYOUT.size));
  const memory = recordMemory(values.buffer as ArrayBuffer);
  const keys = Buffer.alloc(BATCH * KEY_SIZE);
  // the hash map's batch token is a bucket index (u32); room for a u64 all the same
  const tokens = [Buffer.alloc(8), Buffer.alloc(8)];
  const count = Buffer.alloc(4);
  const wCookie = CONN_LAYOUT.fields.cookie.offset >> 2;
  return {
    scan(want, visit) {
      const out: LivesScan = { lives: 0, visited: 0, calls: 0, error: 0 };
      let inBatch: Buffer | null = null;
      for (let t = 0; ; t ^= 1) {
        count.writeUInt32LE(BATCH, 0);
        const rc = libbpf.mapLookupBatch(fd, inBatch, tokens[t]!, keys, values, count);
        out.calls++;
        const n = count.readUInt32LE(0);
        if (rc !== 0 && rc !== -ERRNO.ENOENT) {
          out.error = -rc;
          return out;
        }
        for (let i = 0; i < n; i++) {
          const off = i * LIFE_LAYOUT.size, w = off >> 2;
          const cookie = memory.u32[w + wCookie]! + memory.u32[w + wCookie + 1]! * 4294967296;
          out.lives++;
          if (!want(cookie)) continue;
          out.visited++;
          try {
            visit(memory, off);
          } catch {
            // a visitor's failure is its own (the correlator counts it); the scan goes on
          }
        }
        if (rc === -ERRNO.ENOENT) return out; // that was the last batch
        inBatch = tokens[t]!;
      }
    },
  };
}
