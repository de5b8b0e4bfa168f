// The line `tcpspan run` prints when it stops: what it handled (with sampling, how many ends it
// left out), every kernel counter by name, and every reason anything was lost or dropped.
// Written over names, so a new counter or drop reason appears here without a change.
import type { BridgeSummary } from '../pipeline/bridge.js';

/** The name a counter is shown under: ringbufFull becomes ringbuf_full; snake_case names stay. */
export function counterName(key: string): string {
  return key.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);
}

const entries = (counts: Readonly<Record<string, number>>, nonZeroOnly: boolean): string =>
  Object.entries(counts).filter(([, n]) => !nonZeroOnly || n !== 0).map(([k, n]) => `${counterName(k)} ${n}`).join(', ');

/** `kernelCounters`: the capture's readCounters() as the bridge left it; every one is shown, zero or not. */
export function shutdownLine<T extends { readonly [K in keyof T]: number }>(summary: BridgeSummary, kernelCounters: T): string {
  const lost = Object.values(summary.lostEvents).reduce((a, b) => a + b, 0);
  // sampled out is no loss: beside the spans, not among the drops
  const sampled = summary.sampledOut !== undefined ? `, ${summary.sampledOut} sampled out` : '';
  // checkpoints of open ends (correlator.checkpointMs), when there were any: spans too, beside the ends'
  const checkpoints = summary.checkpoints ? `, ${summary.checkpoints} checkpoints` : '';
  return `stopped: ${summary.kernelEvents} kernel events, ${summary.spans} spans${checkpoints}${sampled} (${entries(summary.exported, false) || 'none exported'}); ` +
    `kernel counters: ${entries(kernelCounters as Record<string, number>, false) || 'none'}; ` +
    `lost kernel events ${lost}${lost ? ` (${entries(summary.lostEvents, true)})` : ''}; ` +
    `correlator drops: ${entries(summary.correlatorDrops, true) || 'none'}; ` +
    (summary.serviceLookupsFailed ? `service lookups failed: ${entries(summary.serviceLookupsFailed, true) || 'none'}; ` : '') +
    `spans dropped: ${entries(summary.dropped, true) || 'none'}` +
    // with a spool: what it took, what an earlier run left in it, and what this run leaves for the next
    Object.entries(summary.spool ?? {}).map(([sink, s]) =>
      `; spool ${sink}: ${s.spooled} written, ${s.replayed} found at start, ${s.spans} left (${s.bytes} bytes)`).join('') +
    (summary.checkpointReadsFailed ? `; checkpoint reads failed: ${summary.checkpointReadsFailed}` : '') +
    // said only when it happened: a cgroup without a path is a span whose resource has no container.id, not a loss
    (Object.values(summary.attributionMisses).some((n) => n > 0) ? `; cgroup lookups missed: ${entries(summary.attributionMisses, true)}` : '') +
    // said only when it happened: ends the kernel no longer held after a loss, ended without their Close
    (summary.closesLost > 0 ? `; ends whose close was lost: ${summary.closesLost}` : '');
}
