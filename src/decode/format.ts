// Turns decoded events into text: addresses, and the documented JSON-lines schema of `tcpspan events`.
import { AF_INET, EventFlag, EventKind, PayloadDir, PayloadWhat, PortOrigin, RECORD_KIND_NAMES, STATE_NAMES, isConnRecord, type KernelEvent } from './event.js';
import { MAX_TRANSITIONS } from './wire-layout.js';

const words = new Uint32Array(4);
const bytes = new Uint8Array(words.buffer);

/** Formats an address kept as four 32-bit words in memory order (network byte order inside). */
export function formatAddress(family: number, w0: number, w1: number, w2: number, w3: number): string {
  words[0] = w0; words[1] = w1; words[2] = w2; words[3] = w3;
  if (family === AF_INET) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`;
  return formatIPv6(bytes);
}

function formatIPv6(b: Uint8Array): string {
  // IPv4-mapped (dual-stack sockets): ::ffff:a.b.c.d, as ss and inet_ntop print it.
  if (b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff) {
    return `::ffff:${b[12]}.${b[13]}.${b[14]}.${b[15]}`;
  }
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // RFC 5952: compress the longest run (>= 2) of zero groups
  let bestStart = -1, bestLen = 0;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i; }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

export function localAddress(e: KernelEvent): string {
  return formatAddress(e.family, e.laddr0, e.laddr1, e.laddr2, e.laddr3);
}

export function remoteAddress(e: KernelEvent): string {
  return formatAddress(e.family, e.raddr0, e.raddr1, e.raddr2, e.raddr3);
}

export function stateName(state: number): string {
  return STATE_NAMES[state] ?? `STATE_${state}`;
}

/** Converts CLOCK_MONOTONIC nanoseconds (bpf_ktime_get_ns) to wall-clock time. */
export interface Clock {
  toEpochNs(monoNs: number): number;
}

export function createClock(): Clock {
  // process.hrtime is CLOCK_MONOTONIC on Linux, the clock bpf_ktime_get_ns reads.
  const offsetNs = (performance.timeOrigin + performance.now()) * 1e6 - Number(process.hrtime.bigint());
  return { toEpochNs: (monoNs: number) => monoNs + offsetNs };
}

/** The JSON-lines record of `tcpspan events` (schema documented in the README). */
export function eventToJson(e: KernelEvent, clock: Clock): Record<string, unknown> {
  const out: Record<string, unknown> = {
    time: new Date(clock.toEpochNs(e.tsNs) / 1e6).toISOString(),
    ts_ns: e.tsNs,
    kind: RECORD_KIND_NAMES[e.kind] ?? `kind_${e.kind}`,
    key: String(e.cookie),
    family: e.family === AF_INET ? 'ipv4' : 'ipv6',
    local: { address: localAddress(e), port: e.lport },
    remote: { address: remoteAddress(e), port: e.rport },
    netns: e.netns,
    state: stateName(e.state),
  };
  if (e.flags & EventFlag.Untracked) out['untracked'] = true;
  if (e.kind === EventKind.Payload) {
    // what the record is, never its bytes
    out['payload'] = {
      dir: e.payloadDir === PayloadDir.Egress ? 'egress' : 'ingress', first: (e.payloadWhat & PayloadWhat.First) !== 0,
      request: (e.payloadWhat & PayloadWhat.Request) !== 0, seq: e.seq, seg_len: e.payloadSegLen, len: e.payloadLen,
    };
    return out;
  }
  if (!isConnRecord(e.kind)) {
    if (e.error) out['error'] = e.error;
    if (e.kind === EventKind.Retransmit || e.kind === EventKind.SynAckRetransmit) {
      out['retransmit'] = { seq: e.seq, segs: e.segs, tcp_flags: e.tcpFlags };
    } else if (e.kind === EventKind.HalfOpenReset || (e.kind === EventKind.ResetSent && e.cookie === 0)) {
      out['tcp_flags'] = e.tcpFlags; // of the RST, or of the segment the RST answered (a SYN: refused)
    }
    return out;
  }
  if (e.flags & EventFlag.Pid) {
    out['pid'] = e.pid;
    out['comm'] = e.comm;
  }
  if (e.cgroupId) out['cgroup_id'] = e.cgroupId;
  out['start_ns'] = e.startNs;
  if (e.flags & EventFlag.SynSockops) out['start'] = 'syn_sockops';
  else if (e.flags & EventFlag.SynRtt) out['start'] = 'syn_rtt';
  const kept = Math.min(e.nTrans, MAX_TRANSITIONS);
  const transitions: { ts_ns: number; from: string; to: string }[] = [];
  for (let i = 0; i < kept; i++) {
    transitions.push({ ts_ns: e.transNs[i]!, from: stateName(i === 0 ? e.firstOldstate : e.transState[i - 1]!), to: stateName(e.transState[i]!) });
  }
  out['transitions'] = transitions;
  if (e.nTrans > kept) out['transitions_not_kept'] = e.nTrans - kept;
  if (e.portOrigin === PortOrigin.Connect) out['local_port'] = 'connect';
  else if (e.portOrigin === PortOrigin.Bound) out['local_port'] = 'bound';
  if (e.error) out['error'] = e.error;
  if (e.retransSegs || e.retransFailed) out['retransmits'] = { segs: e.retransSegs, failed: e.retransFailed };
  if (e.rttCount) {
    out['rtt'] = {
      samples: e.rttCount, min_us: e.rttMinUs, max_us: e.rttMaxUs,
      avg_us: Math.round(e.rttSumUs / e.rttCount),
    };
  }
  if (e.flags & EventFlag.Stats) {
    out['tcp'] = {
      srtt_us: e.srttUs, bytes_acked: e.bytesAcked, bytes_received: e.bytesReceived,
      segs_in: e.segsIn, segs_out: e.segsOut, total_retrans: e.totalRetrans,
    };
  }
  if (e.flags & EventFlag.Isn) out['isn'] = { local: e.isnLocal, peer: e.isnPeer };
  if (e.flags & EventFlag.PeerFin) out['peer_fin'] = true;
  if (e.flags & EventFlag.Lost) out['records_lost'] = true;
  return out;
}
