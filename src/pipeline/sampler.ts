// Sampling: which finished connection ends become spans. Between the correlator and the span
// sinks, after the connection metrics have counted the end: metrics stay exact.
//
// Kept always, whatever the ratio (each rule applies to the end that shows it):
//   error           the span's status is ERROR (refused, timeout, reset_received, reset_sent,
//                   aborted with an errno: close-rules.ts isErrorClose)
//   retransmit      the end retransmitted (or tried to): tcp.retransmits or tcpspan.retransmits.failed > 0
//   slow_handshake  SYN to ESTABLISHED took longer than sampling.keepSlowerThanMs (0: rule off)
// Kept by the ratio otherwise (ratio): OpenTelemetry's consistent probability sampling, the rule
// of the specification's TraceIdRatioBased sampler over W3C Trace Context Level 2 randomness:
//   R = the trace id's 56 least significant bits (its last 14 hex digits)
//   T = 2^56 - round(ratio * 2^56)    (the rejection threshold, (1 - ratio) * 2^56, exact in 56 bits)
//   keep when R >= T
// Both ends of a connection derive one trace id from its ISNs (correlate/trace-id.ts), so the
// ratio keeps or leaves out both ends, on one host or on two, and a downstream consistent sampler
// (the Collector's probabilistic_sampler, an SDK's TraceIdRatioBased) agrees with it. A kept span
// carries tracestate `ot=th:<T>` (ratio) or `ot=th:0` (kept by a rule: probability 1), so
// backends can weigh it (adjusted count 2^56 / (2^56 - T)).
import { isErrorClose } from '../correlate/close-rules.js';
import type { ConnectionRecord } from '../correlate/connection-record.js';

export type KeepReason = 'error' | 'retransmit' | 'slow_handshake' | 'ratio';

export interface SamplingOptions {
  /** share of healthy connections kept, 0..1 */
  ratio: number;
  /** a handshake slower than this keeps its end; 0: rule off */
  keepSlowerThanMs: number;
}

/** What the rules read of a finished end. */
export type SampledEnd = Pick<ConnectionRecord, 'traceId' | 'closeReason' | 'errno' | 'retransmits' | 'retransmitsFailed' | 'handshakeNs'>;

const TWO_56 = 1n << 56n;

/**
 * The rejection threshold of a ratio: a 56-bit integer, 0 for ratio 1; 2^56 for ratio 0 (no
 * randomness reaches it). A ratio below 2^-56, the smallest probability the scheme expresses,
 * is taken as 2^-56.
 */
export function rejectionThreshold(ratio: number): bigint {
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`sampling ratio ${ratio}: expected a number from 0 to 1`);
  if (ratio === 0) return TWO_56;
  // ratio * 2^56 only moves the exponent: exact, and so is its rounding
  return TWO_56 - BigInt(Math.max(1, Math.round(ratio * 2 ** 56)));
}

/** The tracestate `th` value of a threshold: 14 hex digits with the trailing zeros removed; `0` for 0. */
export function thValue(threshold: bigint): string {
  if (threshold < 0n || threshold >= TWO_56) throw new RangeError(`threshold ${threshold}: expected 0 to 2^56 - 1`);
  if (threshold === 0n) return '0';
  return threshold.toString(16).padStart(14, '0').replace(/0+$/, '');
}

/** A threshold split for comparing with a trace id's randomness without a bigint: high 24 bits, low 32. */
export interface SplitThreshold {
  hi: number;
  lo: number;
}

export function splitThreshold(threshold: bigint): SplitThreshold {
  return { hi: Number(threshold >> 32n), lo: Number(threshold & 0xffffffffn) };
}

/** The value of the hex digits s[from..to) (lowercase or uppercase). */
function hexAt(s: string, from: number, to: number): number {
  let v = 0;
  for (let i = from; i < to; i++) {
    const c = s.charCodeAt(i);
    v = v * 16 + (c <= 57 ? c - 48 : (c | 32) - 87);
  }
  return v;
}

/** R >= T: the trace id's randomness (its last 14 of 32 hex digits) reaches the threshold. */
export function randomnessReaches(traceId: string, t: SplitThreshold): boolean {
  const hi = hexAt(traceId, 18, 24);
  return hi > t.hi || (hi === t.hi && hexAt(traceId, 24, 32) >= t.lo);
}

/** The rule, resolved once from the options. */
export interface SamplingRule {
  threshold: SplitThreshold;
  /** keepSlowerThanMs in ns; 0: off */
  slowNs: number;
}

export function samplingRule(opts: SamplingOptions): SamplingRule {
  return { threshold: splitThreshold(rejectionThreshold(opts.ratio)), slowNs: opts.keepSlowerThanMs * 1e6 };
}

/** Why an end's span is kept (the first rule that holds), or undefined: sampled out. */
export function keepReason(end: SampledEnd, rule: SamplingRule): KeepReason | undefined {
  if (isErrorClose(end.closeReason, end.errno)) return 'error';
  if (end.retransmits > 0 || end.retransmitsFailed > 0) return 'retransmit';
  if (rule.slowNs > 0 && end.handshakeNs !== undefined && end.handshakeNs > rule.slowNs) return 'slow_handshake';
  return randomnessReaches(end.traceId, rule.threshold) ? 'ratio' : undefined;
}

/** What the rules read of an end still open (a checkpoint): no close yet, so no error. */
export type OpenEnd = Pick<ConnectionRecord, 'traceId' | 'retransmits' | 'handshakeNs'>;

/**
 * Why a checkpoint of an open end is kept, or undefined. The rules that an open end can already
 * show (retransmits so far, a slow handshake) and the ratio, as keepReason: each only grows
 * true, so the final span of an end whose checkpoint was kept is kept too. Whether it will end
 * in error is known only at close: an end kept only for that has no checkpoints before it.
 */
export function keepReasonOpen(end: OpenEnd, rule: SamplingRule): KeepReason | undefined {
  if (end.retransmits > 0) return 'retransmit';
  if (rule.slowNs > 0 && end.handshakeNs !== undefined && end.handshakeNs > rule.slowNs) return 'slow_handshake';
  return randomnessReaches(end.traceId, rule.threshold) ? 'ratio' : undefined;
}

export interface Sampler {
  /** Why this end's span is kept, or undefined when it is sampled out (counted). Never throws. */
  decide(end: SampledEnd): KeepReason | undefined;
  /** Why a checkpoint of an open end is kept (keepReasonOpen), or undefined: sampled out (counted). Never throws. */
  decideOpen(end: OpenEnd): KeepReason | undefined;
  /** The tracestate of a span kept for this reason. */
  traceState(reason: KeepReason): string;
  /** Spans sampled out so far, ends and checkpoints: none was made (not a loss: the metrics count them). */
  sampledOut(): number;
}

/** A sampler for ratio < 1; with ratio 1 there is nothing to sample (run.ts makes none). */
export function createSampler(opts: SamplingOptions): Sampler {
  const rule = samplingRule(opts);
  const threshold = rejectionThreshold(opts.ratio);
  // ratio 0 keeps nothing by the ratio, so no span ever needs its threshold written
  const byRatio = threshold < TWO_56 ? `ot=th:${thValue(threshold)}` : '';
  const byRule = 'ot=th:0';
  let out = 0;
  return {
    decide(end) {
      const reason = keepReason(end, rule);
      if (reason === undefined) out++;
      return reason;
    },
    decideOpen(end) {
      const reason = keepReasonOpen(end, rule);
      if (reason === undefined) out++;
      return reason;
    },
    traceState: (reason) => (reason === 'ratio' ? byRatio : byRule),
    sampledOut: () => out,
  };
}
