/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * Wire structs shared by the kernel side (tcpspan.bpf.c) and user space
 * (src/decode/wire-layout.ts). Fields are ordered largest first so the layout
 * has no holes; the TypeScript decoder checks every size and offset against
 * the BTF of the compiled object at start-up, so the two cannot drift.
 */
#ifndef __TCPSPAN_H
#define __TCPSPAN_H

#define TCPSPAN_COMM_LEN 16
#define TCPSPAN_MAX_PORTS 16
#define TCPSPAN_MAX_CIDRS 16
/* State transitions kept per connection end; a life has at most 6 in practice. */
#define TCPSPAN_MAX_TRANSITIONS 8

/* What a record reports (the head's kind). */
enum tcpspan_kind {
	TCPSPAN_EV_OPEN = 1,             /* tcpspan_conn: the end reached ESTABLISHED (its life so far) */
	TCPSPAN_EV_CLOSE = 2,            /* tcpspan_conn: the end closed (its whole life) */
	TCPSPAN_EV_RETRANSMIT = 3,       /* tcp:tcp_retransmit_skb */
	TCPSPAN_EV_SYNACK_RETRANSMIT = 4,/* tcp:tcp_retransmit_synack; cookie 0: the child socket does not exist yet */
	TCPSPAN_EV_RESET_RECEIVED = 5,   /* tcp:tcp_receive_reset */
	TCPSPAN_EV_RESET_SENT = 6,       /* tcp:tcp_send_reset; cookie 0 when no socket sent it (closed port) */
	TCPSPAN_EV_ERROR = 7,            /* sock:inet_sk_error_report */
	TCPSPAN_EV_PAYLOAD = 8,          /* tcpspan_payload: the head of a segment's payload (inspect.*, cgroup_skb) */
	TCPSPAN_EV_HALF_OPEN_RESET = 9,  /* tcpspan_event, cookie 0: an RST reached a listener, ending a handshake
	                                    in progress (the peer never completed it; detect.*, cgroup_skb) */
};

/* Head flags (flags) */
#define TCPSPAN_F_PID          0x01 /* pid and comm were taken in process context (connect, accept, close) */
#define TCPSPAN_F_STATS        0x02 /* the tcp_sock counters are filled */
#define TCPSPAN_F_ISN          0x04 /* isn_local and isn_peer are filled (ESTABLISHED was reached) */
#define TCPSPAN_F_UNTRACKED    0x08 /* event: the socket has no summary (timewait or request socket, or no memory) */
#define TCPSPAN_F_LOST         0x10 /* conn: a record about this end could not be written (ring full) */
#define TCPSPAN_F_SYN_SOCKOPS  0x20 /* conn: start_ns is the SYN's arrival, seen by sock_ops */
#define TCPSPAN_F_SYN_RTT      0x40 /* conn: start_ns is ESTABLISHED minus the handshake's RTT sample */
#define TCPSPAN_F_PEER_FIN     0x80 /* CLOSE: the peer's FIN had arrived (SOCK_DONE) */

/*
 * The head every record starts with: what a record is about. A macro, so both
 * records have these members at the same offsets and BTF shows them flat.
 * Everything is host byte order except the addresses.
 */
#define TCPSPAN_HEAD                                                              \
	__u64 ts_ns;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */           \
	__u64 cookie;          /* socket cookie: unique while the socket lives */ \
	__u8 laddr[16];        /* local address; IPv4 in the first 4 bytes */      \
	__u8 raddr[16];        /* remote address */                                \
	__u32 netns;           /* network namespace inode */                       \
	__u16 lport;                                                               \
	__u16 rport;                                                               \
	__u16 family;          /* AF_INET (2) or AF_INET6 (10) */                  \
	__u8 kind;             /* enum tcpspan_kind */                             \
	__u8 flags;            /* TCPSPAN_F_* */                                   \
	__u8 state;            /* the socket's state (conn: the state entered) */  \
	__u8 _head_pad[3]

/* A connection end's life, kept in socket storage and sent whole at OPEN and CLOSE. */
struct tcpspan_conn {
	TCPSPAN_HEAD;
	__u64 start_ns;        /* client: SYN_SENT; server: the SYN (see flags); else first sight */
	__u64 trans_ns[TCPSPAN_MAX_TRANSITIONS]; /* when each state was entered */
	__u64 bytes_acked;     /* tcp_sock counters (TCPSPAN_F_STATS) */
	__u64 bytes_received;
	__u64 rtt_sum_us;      /* sum of smoothed-RTT samples on the receive path */
	__u64 cgroup_id;       /* the socket's cgroup v2 id (its directory's inode number); 0: unknown */
	__u32 rtt_count;       /* samples: segments received with an RTT estimate */
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 srtt_us;         /* smoothed RTT at the record */
	__u32 segs_in;
	__u32 segs_out;
	__u32 total_retrans;
	__u32 retrans_segs;    /* segments retransmitted and sent (tcp_retransmit_skb, err 0) */
	__u32 retrans_failed;  /* retransmit attempts not sent (err != 0) */
	__u32 isn_local;       /* initial sequence numbers (TCPSPAN_F_ISN) */
	__u32 isn_peer;
	__u32 pid;             /* TCPSPAN_F_PID */
	__s32 error;           /* CLOSE: sk_err */
	__u8 trans_state[TCPSPAN_MAX_TRANSITIONS]; /* the state entered by each transition */
	__u8 first_oldstate;   /* the state the first transition left */
	__u8 n_trans;          /* transitions seen (more than TCPSPAN_MAX_TRANSITIONS: the rest not kept) */
	__u8 port_origin;      /* life first seen open: how its local port was taken (TCPSPAN_PORT_*) */
	__u8 _pad[1];
	char comm[TCPSPAN_COMM_LEN];
};

/*
 * How a socket first seen open took its local port (tcpspan_conn.port_origin), from its bind
 * bucket: connect() makes its own (fastreuse -1) and never shares one bind() or listen() made,
 * so such a socket opened the connection, and its bytes_acked counts its SYN.
 */
#define TCPSPAN_PORT_UNKNOWN   0 /* a life seen from its start, or no bind bucket */
#define TCPSPAN_PORT_CONNECT   1 /* picked by connect(): the active opener */
#define TCPSPAN_PORT_BOUND     2 /* bound by bind() or listen(), or a listener's: passive, or a client that bound its port */

/* What a rare event's socket is known as (tcpspan_event.life). */
enum tcpspan_life {
	TCPSPAN_LIFE_NONE = 0,           /* no life: timewait or request socket, a closed one, or no memory */
	TCPSPAN_LIFE_CLIENT = 1,         /* its life began at CLOSE>SYN_SENT */
	TCPSPAN_LIFE_SERVER = 2,         /* its life began at LISTEN>SYN_RECV */
	TCPSPAN_LIFE_MIDWAY = 3,         /* first seen open: open before tcpspan started */
};

/* A rare event of a socket: retransmit, reset, error. */
struct tcpspan_event {
	TCPSPAN_HEAD;
	__u64 life_start_ns;   /* when the socket's life began: its first transition, or its first sight when
	                          open before tcpspan started; never moves (0 without a life) */
	__s32 error;           /* ERROR: sk_err; RETRANSMIT: the transmit's result */
	__u32 seq;             /* RETRANSMIT: first sequence number of the segment */
	__u16 segs;            /* RETRANSMIT: segments in the retransmitted skb */
	__u8 tcp_flags;        /* RETRANSMIT: TCP flags of the segment; RESET_SENT without a socket: of the
	                          segment the RST answered (SYN: a SYN to a closed port) */
	__u8 life;             /* enum tcpspan_life */
	__u8 _pad[4];
};

/* Bytes of a segment's payload a payload record carries at most. */
#define TCPSPAN_PAYLOAD_MAX 1024

/* What a payload record is for (tcpspan_payload.what); both bits may be set. */
#define TCPSPAN_P_FIRST        0x01 /* the first payload of this direction of the socket's life (inspect.protocols) */
#define TCPSPAN_P_REQUEST      0x02 /* the payload begins with an HTTP/1.x method token (inspect.traceparent) */

/* Which way a payload record's segment went (tcpspan_payload.dir). */
#define TCPSPAN_DIR_EGRESS     0x01 /* sent by this socket */
#define TCPSPAN_DIR_INGRESS    0x02 /* received by this socket */

/*
 * The head of one TCP segment's payload, seen by the cgroup_skb programs (only with an
 * inspect.* option on). Variable length: the record ends after len bytes of data.
 */
struct tcpspan_payload {
	TCPSPAN_HEAD;
	/* life_start_ns, seq and life are where tcpspan_event has them */
	__u64 life_start_ns;   /* as tcpspan_event.life_start_ns */
	__u32 seg_len;         /* payload bytes in the segment (or GSO super-segment) */
	__u32 seq;             /* TCP sequence number of the segment's first payload byte (retransmits repeat it) */
	__u16 len;             /* bytes copied into data: min(seg_len, TCPSPAN_PAYLOAD_MAX) */
	__u8 dir;              /* TCPSPAN_DIR_* */
	__u8 life;             /* enum tcpspan_life */
	__u8 what;             /* TCPSPAN_P_* */
	__u8 _pad[3];
	__u8 data[TCPSPAN_PAYLOAD_MAX];
};

/*
 * SYN accounting (detect.*): one entry per listening port and network namespace, kept by
 * the kernel and read by user space every detect.intervalMs (map "listen_ports"), so a
 * SYN flood costs no ring record per SYN.
 */
struct tcpspan_listen_key {
	__u32 netns;           /* network namespace inode */
	__u16 lport;           /* the listener's port */
	__u16 _pad;
};

struct tcpspan_listen_stats {
	__u64 syns;            /* SYNs that reached the listener (also those it then dropped) */
	__u64 queue_full;      /* of those, SYNs that found its SYN queue full: answered with a SYN cookie
	                          (net.ipv4.tcp_syncookies) or dropped */
	__u64 accept_full;     /* of those, SYNs that found its accept queue full (dropped: ListenOverflows) */
	__u64 synack_retrans;  /* SYN-ACKs it retransmitted (tcp:tcp_retransmit_synack) */
	__u64 seen_ns;         /* when qlen was last read */
	__u32 qlen;            /* half-open connections (request sockets) at the last segment or SYN-ACK retransmit */
	__u32 qlen_peak;       /* the largest qlen seen since epoch began */
	__u32 backlog;         /* the listen() backlog: the SYN and accept queues' limit */
	__u32 epoch;           /* the read epoch qlen_peak belongs to (map "detect_epoch") */
};

/* SYNs per source address of a listener under pressure (SYN queue at least half full): flood evidence. */
struct tcpspan_syn_source_key {
	__u8 saddr[16];        /* IPv4 in the first 4 bytes */
	__u32 netns;
	__u16 lport;
	__u16 family;
};

/* inspect switches (tcpspan_filter.inspect) */
#define TCPSPAN_INSPECT_TRACEPARENT 0x01
#define TCPSPAN_INSPECT_PROTOCOLS   0x02

/* Loss and health counters, one set per CPU (map "counters"). */
enum tcpspan_counter {
	TCPSPAN_C_SUBMITTED = 0,      /* records written to the ring */
	TCPSPAN_C_RINGBUF_FULL,       /* records lost: ring buffer full */
	TCPSPAN_C_SOCK_MAP_FULL,      /* sockets not tracked: no socket storage (memory) */
	TCPSPAN_C_SYN_MAP_FULL,       /* SYN arrival times not recorded: map update failed */
	TCPSPAN_C_NR,
};

struct tcpspan_counters {
	__u64 c[TCPSPAN_C_NR];
};

struct tcpspan_cidr {
	__u8 addr[16];         /* IPv4 in the first 4 bytes */
	__u32 family;
	__u32 prefix;
};

/* Kernel-side filters and switches, set before load. Ports match either end; so do addresses. */
struct tcpspan_filter {
	struct tcpspan_cidr cidrs[TCPSPAN_MAX_CIDRS];
	__u16 ports[TCPSPAN_MAX_PORTS];
	__u32 n_cidrs;
	__u32 n_ports;
	__u32 netns;           /* 0: every network namespace */
	__u32 syn_sockops;     /* 1: the sock_ops program records SYN arrivals (look them up) */
	__u32 inspect;         /* TCPSPAN_INSPECT_*: what the cgroup_skb programs send (0: they are not loaded) */
	__u32 detect;          /* 1: SYN accounting is on (handle_listen_ingress loaded, listen_ports kept) */
};

#endif /* __TCPSPAN_H */
