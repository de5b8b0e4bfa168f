// Which capabilities capture has, and what each missing one disables (Linux >= 5.8,
// where CAP_BPF and CAP_PERFMON split from CAP_SYS_ADMIN):
//   CAP_BPF       maps and programs at all                        required
//   CAP_PERFMON   tracing programs (they read kernel memory)      required
//   CAP_NET_ADMIN cgroup sock_ops (SYN timing) and cgroup_skb     optional: capture runs without them
// CAP_SYS_ADMIN is never needed; it stands in for CAP_BPF and CAP_PERFMON (kernels before
// 5.8 know only it). Root has them all.
import { readFileSync } from 'node:fs';

export const CAP_BITS = { CAP_NET_ADMIN: 12, CAP_SYS_ADMIN: 21, CAP_PERFMON: 38, CAP_BPF: 39 } as const;
export type CapName = keyof typeof CAP_BITS;

export interface Capabilities {
  /** 'root' or 'uid N' */
  readonly who: string;
  has(cap: CapName): boolean;
}

/** The effective capabilities of this process (from /proc/self/status, or the given text). */
export function readCapabilities(statusText?: string, euid = process.geteuid?.() ?? 0): Capabilities {
  let text = statusText;
  if (text === undefined) {
    try { text = readFileSync('/proc/self/status', 'utf8'); } catch { text = ''; }
  }
  const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(text);
  const eff = m ? BigInt(`0x${m[1]}`) : 0n;
  return {
    who: euid === 0 ? 'root' : `uid ${euid}`,
    has: (cap) => (eff & (1n << BigInt(CAP_BITS[cap]))) !== 0n,
  };
}

/** CAP_BPF and CAP_PERFMON, or CAP_SYS_ADMIN in their place, as the kernel accepts them. */
export function missingRequired(caps: Capabilities): CapName[] {
  if (caps.has('CAP_SYS_ADMIN')) return [];
  return (['CAP_BPF', 'CAP_PERFMON'] as const).filter((c) => !caps.has(c));
}

/** What goes off without CAP_NET_ADMIN, of what `want` asks for: one phrase each (run and doctor say the same). */
export function withoutNetAdmin(want: { synTiming: boolean; detect?: boolean }): string[] {
  return [
    want.synTiming && 'SYN timing is off (server spans start when the SYN-ACK was sent, a few µs after the SYN)',
    want.detect && 'SYN accounting and SYN flood detection are off (port scans are still detected)',
  ].filter((x): x is string => typeof x === 'string');
}

export interface CapturePrivileges {
  /** set: capture cannot run; one line naming what is missing and the fix */
  fatal?: string;
  /** whether SYN timing (cgroup sock_ops) can be on */
  synTiming: boolean;
  /** whether SYN accounting (a cgroup_skb program) can be on */
  detect: boolean;
  /** one line per missing optional capability, naming what it disables */
  warnings: string[];
}

const GRANT = 'run as root (sudo bin/tcpspan ...) or grant them (setcap, or cap_add in a container)';

/**
 * What capture may do with `caps`: the required capabilities, and CAP_NET_ADMIN for the
 * cgroup programs. SYN timing and SYN accounting are switched off without it (and said so,
 * in one line); what the user asked for explicitly (`needsNetAdmin`: e.g. payload inspection)
 * makes it required.
 */
export function capturePrivileges(caps: Capabilities, want: { synTiming: boolean; detect?: boolean; needsNetAdmin?: string }): CapturePrivileges {
  const missing = missingRequired(caps);
  const netAdmin = caps.has('CAP_NET_ADMIN');
  if (!netAdmin && want.needsNetAdmin) missing.push('CAP_NET_ADMIN');
  if (missing.length > 0) {
    const why = missing.map((c) => (c === 'CAP_NET_ADMIN' ? `${c} (for ${want.needsNetAdmin})` : c)).join(' and ');
    return { fatal: `${caps.who} lacks ${why}, without which tcpspan cannot load its BPF programs: ${GRANT}`, synTiming: false, detect: false, warnings: [] };
  }
  const warnings: string[] = [];
  const off = netAdmin ? [] : withoutNetAdmin(want);
  if (off.length > 0) {
    warnings.push(`CAP_NET_ADMIN is missing: ${off.join('; ')}; grant CAP_NET_ADMIN for the cgroup programs` +
      (want.synTiming ? ', or set capture.synTiming=false to say so' : ''));
  }
  return { synTiming: want.synTiming && netAdmin, detect: (want.detect ?? false) && netAdmin, warnings };
}
