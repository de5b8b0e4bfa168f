// Reads the kernel's SYN accounting (detect.*): the per-listening-port entries of map
// listen_ports and the per-source SYN counts of map syn_sources (bpf/tcpspan.h). One read
// per detect.intervalMs; each read bumps the epoch, so each entry's qlen_peak is the peak
// since the previous read.
import { libbpf } from './libbpf.js';
import { LISTEN_KEY_LAYOUT, LISTEN_STATS_LAYOUT, SYN_SOURCE_KEY_LAYOUT } from '../decode/wire-layout.js';
import { formatAddress } from '../decode/format.js';

/** One listening port of one network namespace, as the kernel has counted it (cumulative since first SYN). */
export interface ListenStat {
  netns: number;
  port: number;
  syns: number;
  /** SYNs that found the SYN queue full: answered with a SYN cookie, or dropped without syncookies */
  queueFull: number;
  /** SYNs that found the accept queue full (dropped) */
  acceptFull: number;
  synackRetransmits: number;
  /** half-open connections (request sockets) at the last segment to the listener or SYN-ACK retransmit */
  halfOpen: number;
  /** the largest half-open count seen since the previous read (or halfOpen when nothing was seen) */
  halfOpenPeak: number;
  backlog: number;
  /** CLOCK_MONOTONIC ns of that reading */
  seenNs: number;
}

/** SYNs one source sent to a listener while its SYN queue was at least half full (cumulative). */
export interface SynSource {
  netns: number;
  port: number;
  address: string;
  syns: number;
}

export interface ListenReader {
  /** Every entry, and a new epoch for the peaks. */
  read(): { ports: ListenStat[]; sources: SynSource[] };
}

const K = LISTEN_KEY_LAYOUT.fields, V = LISTEN_STATS_LAYOUT.fields, S = SYN_SOURCE_KEY_LAYOUT.fields;
const u64 = (b: Buffer, off: number): number => b.readUInt32LE(off) + b.readUInt32LE(off + 4) * 4294967296;

export function createListenReader(portsFd: number, sourcesFd: number, epochFd: number): ListenReader {
  const zero = Buffer.alloc(4);
  const epochValue = Buffer.alloc(4);
  let epoch = 0;
  const keys = [Buffer.alloc(LISTEN_KEY_LAYOUT.size), Buffer.alloc(LISTEN_KEY_LAYOUT.size)];
  const value = Buffer.alloc(LISTEN_STATS_LAYOUT.size);
  const skeys = [Buffer.alloc(SYN_SOURCE_KEY_LAYOUT.size), Buffer.alloc(SYN_SOURCE_KEY_LAYOUT.size)];
  const count = Buffer.alloc(8);
  return {
    read() {
      const ports: ListenStat[] = [];
      let prev: Buffer | null = null;
      // bounded by the map's size (1024); an entry evicted meanwhile just ends the walk early
      for (let i = 0; i < 4096 && libbpf.mapGetNextKey(portsFd, prev, keys[i % 2]!) === 0; i++) {
        const k = keys[i % 2]!;
        prev = k;
        if (libbpf.mapLookupElem(portsFd, k, value) !== 0) continue;
        const current = value.readUInt32LE(V.epoch.offset) === epoch;
        const halfOpen = value.readUInt32LE(V.qlen.offset);
        ports.push({
          netns: k.readUInt32LE(K.netns.offset), port: k.readUInt16LE(K.lport.offset),
          syns: u64(value, V.syns.offset), queueFull: u64(value, V.queue_full.offset), acceptFull: u64(value, V.accept_full.offset),
          synackRetransmits: u64(value, V.synack_retrans.offset), halfOpen,
          halfOpenPeak: current ? Math.max(halfOpen, value.readUInt32LE(V.qlen_peak.offset)) : halfOpen,
          backlog: value.readUInt32LE(V.backlog.offset), seenNs: u64(value, V.seen_ns.offset),
        });
      }
      // a new epoch: the next peaks start from the next segment
      epoch = (epoch + 1) >>> 0;
      epochValue.writeUInt32LE(epoch, 0);
      libbpf.mapUpdateElem(epochFd, zero, epochValue);
      const sources: SynSource[] = [];
      prev = null;
      for (let i = 0; i < 16384 && libbpf.mapGetNextKey(sourcesFd, prev, skeys[i % 2]!) === 0; i++) {
        const k = skeys[i % 2]!;
        prev = k;
        if (libbpf.mapLookupElem(sourcesFd, k, count) !== 0) continue;
        const family = k.readUInt16LE(S.family.offset);
        sources.push({
          netns: k.readUInt32LE(S.netns.offset), port: k.readUInt16LE(S.lport.offset),
          address: formatAddress(family, k.readUInt32LE(S.saddr.offset), k.readUInt32LE(S.saddr.offset + 4),
            k.readUInt32LE(S.saddr.offset + 8), k.readUInt32LE(S.saddr.offset + 12)),
          syns: u64(count, 0),
        });
      }
      return { ports, sources };
    },
  };
}
