// The byte layout of the structs in bpf/tcpspan.h, as the decoder reads them.
// checkWireLayout() compares this table with the BTF of the compiled object at
// start-up, so a change on one side without the other fails loudly, never silently.
import type { StructLayout } from '../capture/btf.js';

export interface FieldSpec {
  readonly offset: number;
  readonly size: number;
}

export type LayoutSpec<F extends string> = { readonly size: number; readonly fields: Readonly<Record<F, FieldSpec>> };

const f = (offset: number, size: number): FieldSpec => ({ offset, size });

export const EVENT_LAYOUT = {
  size: 176,
  fields: {
    ts_ns: f(0, 8),
    cookie: f(8, 8),
    syn_ns: f(16, 8),
    bytes_acked: f(24, 8),
    bytes_received: f(32, 8),
    rx_bytes: f(40, 8),
    rtt_sum_us: f(48, 8),
    rtt_count: f(56, 4),
    rtt_min_us: f(60, 4),
    rtt_max_us: f(64, 4),
    srtt_us: f(68, 4),
    rx_segs: f(72, 4),
    segs_in: f(76, 4),
    segs_out: f(80, 4),
    total_retrans: f(84, 4),
    isn_local: f(88, 4),
    isn_peer: f(92, 4),
    netns: f(96, 4),
    pid: f(100, 4),
    error: f(104, 4),
    seq: f(108, 4),
    laddr: f(112, 16),
    raddr: f(128, 16),
    lport: f(144, 2),
    rport: f(146, 2),
    family: f(148, 2),
    segs: f(150, 2),
    kind: f(152, 1),
    oldstate: f(153, 1),
    state: f(154, 1),
    tcp_flags: f(155, 1),
    flags: f(156, 1),
    comm: f(160, 16),
  },
} as const satisfies LayoutSpec<string>;

export const COUNTERS_LAYOUT = {
  size: 32,
  fields: { c: f(0, 32) },
} as const satisfies LayoutSpec<string>;

export const CIDR_LAYOUT = {
  size: 24,
  fields: { addr: f(0, 16), family: f(16, 4), prefix: f(20, 4) },
} as const satisfies LayoutSpec<string>;

export const FILTER_LAYOUT = {
  size: 432,
  fields: {
    cidrs: f(0, 16 * 24),
    ports: f(384, 32),
    n_cidrs: f(416, 4),
    n_ports: f(420, 4),
    netns: f(424, 4),
    flags: f(428, 4),
  },
} as const satisfies LayoutSpec<string>;

export const MAX_PORTS = 16;
export const MAX_CIDRS = 16;

/** The structs checked, by their C name. */
export const WIRE_STRUCTS: Record<string, LayoutSpec<string>> = {
  tcpspan_event: EVENT_LAYOUT,
  tcpspan_counters: COUNTERS_LAYOUT,
  tcpspan_cidr: CIDR_LAYOUT,
  tcpspan_filter: FILTER_LAYOUT,
};

/** Differences between the decoder's table and the compiled object's layout; empty when they agree. */
export function compareLayout(spec: LayoutSpec<string>, actual: StructLayout | undefined, name: string): string[] {
  if (!actual) return [`struct ${name} is missing from the object's BTF`];
  const problems: string[] = [];
  if (actual.size !== spec.size) problems.push(`struct ${name} is ${actual.size} bytes in the object, ${spec.size} in the decoder`);
  for (const [field, want] of Object.entries(spec.fields)) {
    const got = actual.members[field];
    if (!got) problems.push(`${name}.${field} is missing from the object`);
    else if (got.offset !== want.offset || got.size !== want.size) {
      problems.push(`${name}.${field} is at ${got.offset} (+${got.size}) in the object, ${want.offset} (+${want.size}) in the decoder`);
    }
  }
  return problems;
}
