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

/** The head every record starts with (TCPSPAN_HEAD in bpf/tcpspan.h). */
const HEAD_FIELDS = {
  ts_ns: f(0, 8),
  cookie: f(8, 8),
  laddr: f(16, 16),
  raddr: f(32, 16),
  netns: f(48, 4),
  lport: f(52, 2),
  rport: f(54, 2),
  family: f(56, 2),
  kind: f(58, 1),
  flags: f(59, 1),
  state: f(60, 1),
} as const;

export const HEAD_SIZE = 64;

/** struct tcpspan_conn: a connection end's life (OPEN and CLOSE records). */
export const CONN_LAYOUT = {
  size: 248,
  fields: {
    ...HEAD_FIELDS,
    start_ns: f(64, 8),
    trans_ns: f(72, 64),
    bytes_acked: f(136, 8),
    bytes_received: f(144, 8),
    rtt_sum_us: f(152, 8),
    cgroup_id: f(160, 8),
    rtt_count: f(168, 4),
    rtt_min_us: f(172, 4),
    rtt_max_us: f(176, 4),
    srtt_us: f(180, 4),
    segs_in: f(184, 4),
    segs_out: f(188, 4),
    total_retrans: f(192, 4),
    retrans_segs: f(196, 4),
    retrans_failed: f(200, 4),
    isn_local: f(204, 4),
    isn_peer: f(208, 4),
    pid: f(212, 4),
    error: f(216, 4),
    trans_state: f(220, 8),
    first_oldstate: f(228, 1),
    n_trans: f(229, 1),
    port_origin: f(230, 1),
    comm: f(232, 16),
  },
} as const satisfies LayoutSpec<string>;

/**
 * struct sock_info (bpf/tcpspan.bpf.c): a value of the `lives` map, the life as the kernel keeps
 * it: the tcpspan_conn it sends at Open and Close, then what only the kernel needs. Checkpoints
 * read it from the map (capture/lives-reader.ts); its head's ts_ns and kind are not filled there.
 */
export const LIFE_LAYOUT = {
  size: 256,
  fields: {
    c: f(0, 248),
    closed: f(248, 4),
    inspected: f(252, 4),
  },
} as const satisfies LayoutSpec<string>;

/** struct tcpspan_event: a rare event of a socket (retransmit, reset, error). */
export const EVENT_LAYOUT = {
  size: 88,
  fields: {
    ...HEAD_FIELDS,
    life_start_ns: f(64, 8),
    error: f(72, 4),
    seq: f(76, 4),
    segs: f(80, 2),
    tcp_flags: f(82, 1),
    life: f(83, 1),
  },
} as const satisfies LayoutSpec<string>;

/** TCPSPAN_PAYLOAD_MAX: payload bytes a payload record carries at most. */
export const PAYLOAD_MAX = 1024;

/**
 * struct tcpspan_payload: the head of a segment's payload (inspect.*). Variable length:
 * the record ends after `len` bytes of `data`, so `size` is its largest. life_start_ns,
 * seq and life are where tcpspan_event has them.
 */
export const PAYLOAD_LAYOUT = {
  size: 88 + PAYLOAD_MAX,
  fields: {
    ...HEAD_FIELDS,
    life_start_ns: f(64, 8),
    seg_len: f(72, 4),
    seq: f(76, 4),
    len: f(80, 2),
    dir: f(82, 1),
    life: f(83, 1),
    what: f(84, 1),
    data: f(88, PAYLOAD_MAX),
  },
} as const satisfies LayoutSpec<string>;

/** TCPSPAN_P_*: what a payload record is for (both may be set). */
export const PayloadWhat = { First: 0x01, Request: 0x02 } as const;
/** TCPSPAN_DIR_*: which way its segment went. */
export const PayloadDir = { Egress: 0x01, Ingress: 0x02 } as const;
/** TCPSPAN_INSPECT_*: tcpspan_filter.inspect. */
export const InspectBits = { Traceparent: 0x01, Protocols: 0x02 } as const;

/** enum tcpspan_life: what a rare event's socket is known as. */
export const Life = { None: 0, Client: 1, Server: 2, Midway: 3 } as const;

/** TCPSPAN_PORT_*: how a socket first seen open took its local port (tcpspan_conn.port_origin) */
export const PortOrigin = { Unknown: 0, Connect: 1, Bound: 2 } as const;

/** TCPSPAN_MAX_TRANSITIONS */
export const MAX_TRANSITIONS = 8;

export const COUNTERS_LAYOUT = {
  size: 32,
  fields: { c: f(0, 32) },
} as const satisfies LayoutSpec<string>;

export const CIDR_LAYOUT = {
  size: 24,
  fields: { addr: f(0, 16), family: f(16, 4), prefix: f(20, 4) },
} as const satisfies LayoutSpec<string>;

export const FILTER_LAYOUT = {
  size: 440,
  fields: {
    cidrs: f(0, 16 * 24),
    ports: f(384, 32),
    n_cidrs: f(416, 4),
    n_ports: f(420, 4),
    netns: f(424, 4),
    syn_sockops: f(428, 4),
    inspect: f(432, 4),
    detect: f(436, 4),
  },
} as const satisfies LayoutSpec<string>;

/** struct tcpspan_listen_key: a listening port in a network namespace (map listen_ports). */
export const LISTEN_KEY_LAYOUT = {
  size: 8,
  fields: { netns: f(0, 4), lport: f(4, 2) },
} as const satisfies LayoutSpec<string>;

/** struct tcpspan_listen_stats: what happened at that port (SYN accounting, detect.*). */
export const LISTEN_STATS_LAYOUT = {
  size: 56,
  fields: {
    syns: f(0, 8),
    queue_full: f(8, 8),
    accept_full: f(16, 8),
    synack_retrans: f(24, 8),
    seen_ns: f(32, 8),
    qlen: f(40, 4),
    qlen_peak: f(44, 4),
    backlog: f(48, 4),
    epoch: f(52, 4),
  },
} as const satisfies LayoutSpec<string>;

/** struct tcpspan_syn_source_key: SYNs of one source to a listener under pressure (map syn_sources, value u64). */
export const SYN_SOURCE_KEY_LAYOUT = {
  size: 24,
  fields: { saddr: f(0, 16), netns: f(16, 4), lport: f(20, 2), family: f(22, 2) },
} as const satisfies LayoutSpec<string>;

export const MAX_PORTS = 16;
export const MAX_CIDRS = 16;

/** The structs checked, by their C name. */
export const WIRE_STRUCTS: Record<string, LayoutSpec<string>> = {
  tcpspan_conn: CONN_LAYOUT,
  sock_info: LIFE_LAYOUT,
  tcpspan_event: EVENT_LAYOUT,
  tcpspan_payload: PAYLOAD_LAYOUT,
  tcpspan_counters: COUNTERS_LAYOUT,
  tcpspan_cidr: CIDR_LAYOUT,
  tcpspan_filter: FILTER_LAYOUT,
  tcpspan_listen_key: LISTEN_KEY_LAYOUT,
  tcpspan_listen_stats: LISTEN_STATS_LAYOUT,
  tcpspan_syn_source_key: SYN_SOURCE_KEY_LAYOUT,
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
