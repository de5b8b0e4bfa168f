/* SPDX-License-Identifier: Apache-2.0 */
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

/* What a record reports (tcpspan_event.kind). */
enum tcpspan_kind {
	TCPSPAN_EV_STATE = 1,            /* sock:inet_sock_set_state */
	TCPSPAN_EV_RETRANSMIT = 2,       /* tcp:tcp_retransmit_skb */
	TCPSPAN_EV_SYNACK_RETRANSMIT = 3,/* tcp:tcp_retransmit_synack; cookie 0: the child socket does not exist yet */
	TCPSPAN_EV_RESET_RECEIVED = 4,   /* tcp:tcp_receive_reset */
	TCPSPAN_EV_RESET_SENT = 5,       /* tcp:tcp_send_reset; cookie 0 when no socket sent it (closed port) */
	TCPSPAN_EV_ERROR = 6,            /* sock:inet_sk_error_report */
};

/* tcpspan_event.flags */
#define TCPSPAN_F_PID          0x01 /* pid and comm were taken in process context */
#define TCPSPAN_F_STATS        0x02 /* the tcp_sock counters are filled */
#define TCPSPAN_F_ISN          0x04 /* isn_local and isn_peer are filled (transition to ESTABLISHED) */
#define TCPSPAN_F_UNTRACKED    0x08 /* the socket map was full: no receive-path summary for this socket */

/* One ring-buffer record. Everything is host byte order except the addresses. */
struct tcpspan_event {
	__u64 ts_ns;           /* bpf_ktime_get_ns(): CLOCK_MONOTONIC */
	__u64 cookie;          /* socket cookie: unique while the socket lives, never reused */
	__u64 syn_ns;          /* passive open: when the SYN arrived (0 = not seen) */
	__u64 bytes_acked;     /* tcp_sock counters (TCPSPAN_F_STATS) */
	__u64 bytes_received;
	__u64 rx_bytes;        /* receive path (tcp:tcp_probe), summed in the kernel */
	__u64 rtt_sum_us;      /* sum of smoothed-RTT samples */
	__u32 rtt_count;       /* smoothed-RTT samples taken on the receive path */
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 srtt_us;         /* smoothed RTT now */
	__u32 rx_segs;         /* segments seen on the receive path */
	__u32 segs_in;         /* tcp_sock counters (TCPSPAN_F_STATS) */
	__u32 segs_out;
	__u32 total_retrans;
	__u32 isn_local;       /* initial sequence numbers (TCPSPAN_F_ISN) */
	__u32 isn_peer;
	__u32 netns;           /* network namespace inode */
	__u32 pid;             /* process id (TCPSPAN_F_PID) */
	__s32 error;           /* ERROR and CLOSE: sk_err; RETRANSMIT: the transmit's result */
	__u32 seq;             /* RETRANSMIT: first sequence number of the segment */
	__u8 laddr[16];        /* local address; IPv4 in the first 4 bytes */
	__u8 raddr[16];        /* remote address */
	__u16 lport;
	__u16 rport;
	__u16 family;          /* AF_INET (2) or AF_INET6 (10) */
	__u16 segs;            /* RETRANSMIT: segments in the retransmitted skb */
	__u8 kind;             /* enum tcpspan_kind */
	__u8 oldstate;         /* STATE: the state left */
	__u8 state;            /* STATE: the state entered; others: the socket's state */
	__u8 tcp_flags;        /* RETRANSMIT: TCP flags of the segment */
	__u8 flags;            /* TCPSPAN_F_* */
	__u8 _pad[3];
	char comm[TCPSPAN_COMM_LEN];
};

/* Loss and health counters, one set per CPU (map "counters"). */
enum tcpspan_counter {
	TCPSPAN_C_SUBMITTED = 0,      /* records written to the ring */
	TCPSPAN_C_RINGBUF_FULL,       /* records lost: ring buffer full */
	TCPSPAN_C_SOCK_MAP_FULL,      /* sockets not tracked: no socket storage (memory), summary lost */
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

/* Kernel-side filters, set before load. Ports match either end; so do addresses. */
struct tcpspan_filter {
	struct tcpspan_cidr cidrs[TCPSPAN_MAX_CIDRS];
	__u16 ports[TCPSPAN_MAX_PORTS];
	__u32 n_cidrs;
	__u32 n_ports;
	__u32 netns;           /* 0: every network namespace */
	__u32 flags;           /* reserved, 0 */
};

#endif /* __TCPSPAN_H */
