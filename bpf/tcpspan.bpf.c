// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpspan kernel side: each TCP connection end's life is kept in a map and sent
 * whole, as one record, when the end closes (and once when it is established,
 * so user space knows what is open). Rare events (retransmits,
 * resets, errors) are records of their own. All hooks are BTF tracepoints, so
 * they attach without tracefs.
 *
 * Programs:
 *   tp_btf/inet_sock_set_state   every state transition: kept in the life; OPEN and CLOSE records
 *   tp_btf/tcp_retransmit_skb    every retransmitted segment: counted, and a record
 *   tp_btf/tcp_retransmit_synack every retransmitted SYN-ACK: a record
 *   tp_btf/tcp_probe             receive path: RTT summary and current counters per socket, no record
 *   tp_btf/tcp_receive_reset     RST received: a record
 *   tp_btf/tcp_send_reset        RST sent: a record
 *   tp_btf/inet_sk_error_report  socket errors (ECONNREFUSED, ETIMEDOUT, ...): a record
 *   tp_btf/tcp_destroy_sock      the socket is gone: its life is forgotten
 *   sockops                      when a SYN reached a listener (optional: capture.synTiming)
 *   tracepoint/syscalls/sys_exit_accept4, sys_exit_accept
 *                                the accepting process of a server end (optional: needs tracefs);
 *                                one run per accept, where the per-segment sock:sock_recv_length,
 *                                sock:sock_send_length and tcp:tcp_rcv_space_adjust run on every
 *                                send or receive
 *   cgroup_skb/egress, /ingress  the head of a segment's payload (opt-in: inspect.*; not even loaded otherwise)
 *   cgroup_skb/ingress           segments that reach a listener: SYNs counted per listening port in a map
 *                                (no record), an RST ending a handshake in progress as a record (detect.*)
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_endian.h>
#include "tcpspan.h"

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define EEXIST 17

/* GPL-compatible, as bpf_probe_read_kernel requires; the SPDX line above is the license. */
char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Filters, fixed before load: the kernel drops what nobody asked for. */
const volatile struct tcpspan_filter tcpspan_filter = {};

/* Keep the wire structs in BTF so user space can check its layout against them. */
const struct tcpspan_event *unused_event __attribute__((unused));
const struct tcpspan_conn *unused_conn __attribute__((unused));
const struct tcpspan_counters *unused_counters __attribute__((unused));
const struct tcpspan_payload *unused_payload __attribute__((unused));
const struct tcpspan_listen_key *unused_listen_key __attribute__((unused));
const struct tcpspan_listen_stats *unused_listen_stats __attribute__((unused));
const struct tcpspan_syn_source_key *unused_syn_source_key __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the loader */
} events SEC(".maps");

/* A connection end's life: the record it becomes, and what only the kernel needs. */
struct sock_info {
	struct tcpspan_conn c;
	__u32 closed;          /* the Close record was sent: later events belong to no life until the next start */
	__u32 inspected;       /* TCPSPAN_DIR_* of the directions whose first payload was sent (inspect.protocols) */
};

/*
 * Lives by socket address, in a preallocated hash: an insert takes a free element
 * from a per-CPU list, where socket-local storage allocates (memcg-charged) per
 * socket and frees through RCU. A life outlives its Close record until the socket is
 * destroyed (tcp:tcp_destroy_sock), so the events that trail a close (an abortive
 * close's RST, the error report) still find its tuple, which the kernel has cleared
 * by then; being deleted there, an entry never outlives its socket, so an address
 * reused by a new socket never finds an old life. The cookie is taken once, into the
 * life. A full map refuses new lives (counted: sock_map_full).
 */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 65536); /* resized by the loader: capture.maxSockets */
	__type(key, __u64);
	__type(value, struct sock_info);
} lives SEC(".maps");

/*
 * Per-CPU scratch is shared by every program on a CPU, and a program in process context
 * can be interrupted by a softirq running another (or the spare copy of the same one,
 * handle_set_state_spare) that wants the same scratch. So each scratch has two slots and a
 * per-CPU nesting depth picks one: an interrupting run completes before the interrupted one
 * goes on, so depth 0 and 1 are never in use by two runs at once.
 */
#define SCRATCH_SLOTS 2

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} scratch_depth SEC(".maps");

/* The slot this run may use (its depth is taken until scratch_leave), or -1 when nested deeper. */
static __always_inline int scratch_enter(void)
{
	__u32 zero = 0, *depth = bpf_map_lookup_elem(&scratch_depth, &zero);
	__u32 slot;

	if (!depth || *depth >= SCRATCH_SLOTS)
		return -1;
	slot = *depth;
	*depth = slot + 1;
	return slot;
}

static __always_inline void scratch_leave(int slot)
{
	__u32 zero = 0, *depth = bpf_map_lookup_elem(&scratch_depth, &zero);

	if (depth && slot >= 0)
		*depth = slot;
}

/* A new life is made here before it is inserted: too large for the BPF stack beside the rest. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct sock_info);
} fresh_life SEC(".maps");

/* When a SYN reached a listener, until the child socket appears (at handshake end). */
struct syn_key {
	__u64 netns_cookie;
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u32 family;
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, struct syn_key);
	__type(value, __u64);
} syn_times SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct tcpspan_counters);
} counters SEC(".maps");

/*
 * SYN accounting (detect.*): what happened at each listening port, summarised here and
 * read by user space every detect.intervalMs, so a flood of SYNs costs map updates, not a
 * ring record per SYN. LRU: a port that stopped receiving SYNs makes room for a new one.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1024);
	__type(key, struct tcpspan_listen_key);
	__type(value, struct tcpspan_listen_stats);
} listen_ports SEC(".maps");

/* SYNs per source of a listener whose SYN queue is at least half full: a flood's top sources. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 4096);
	__type(key, struct tcpspan_syn_source_key);
	__type(value, __u64);
} syn_sources SEC(".maps");

/* The read epoch, bumped by user space at each read: qlen_peak restarts with it. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} detect_epoch SEC(".maps");

static __always_inline void count(__u32 which)
{
	__u32 zero = 0;
	struct tcpspan_counters *c = bpf_map_lookup_elem(&counters, &zero);

	/* atomic even per CPU: a softirq's program can interrupt a count in process context */
	if (c && which < TCPSPAN_C_NR)
		__sync_fetch_and_add(&c->c[which], 1);
}

#define PF_KTHREAD 0x00200000

/*
 * True when the current task is the user process acting on the socket. Only
 * system calls make these transitions (connect, close/shutdown); the others
 * mostly run in softirq, where the current task is whoever was interrupted
 * (on loopback, often the peer), so its pid would be a lie.
 */
static __always_inline bool syscall_transition(int newstate)
{
	struct task_struct *task;

	if (newstate != TCP_SYN_SENT && newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK)
		return false;
	/* kernel threads (MPTCP subflows, NFS, ...) also connect and close */
	task = bpf_get_current_task_btf();
	return !(task->flags & PF_KTHREAD);
}

struct tuple {
	__u8 laddr[16];
	__u8 raddr[16];
	__u16 lport;
	__u16 rport;
	__u16 family;
};

/*
 * Programs on BTF tracepoints get typed pointers: plain loads (CO-RE
 * relocated, fault-safe) cost a fraction of a bpf_probe_read call each.
 */
static __always_inline void tuple_of(const struct sock_common *skc, struct tuple *t)
{
	t->family = skc->skc_family;
	t->lport = skc->skc_num;
	t->rport = bpf_ntohs(skc->skc_dport);
	if (t->family == AF_INET) {
		*(__u32 *)t->laddr = skc->skc_rcv_saddr;
		*(__u32 *)t->raddr = skc->skc_daddr;
	} else {
		__builtin_memcpy(t->laddr, skc->skc_v6_rcv_saddr.in6_u.u6_addr8, 16);
		__builtin_memcpy(t->raddr, skc->skc_v6_daddr.in6_u.u6_addr8, 16);
	}
}

static __always_inline __u32 netns_of(const struct sock_common *skc)
{
	return skc->skc_net.net->ns.inum;
}

static __always_inline bool prefix_match(const __u8 *a, const volatile __u8 *net, __u32 prefix)
{
	for (int i = 0; i < 16; i++) {
		int bits = (int)prefix - 8 * i;
		__u8 mask;

		if (bits <= 0)
			break;
		mask = bits >= 8 ? 0xff : (__u8)(0xff << (8 - bits));
		if ((a[i] ^ net[i]) & mask)
			return false;
	}
	return true;
}

static __always_inline bool addr_match(const __u8 *addr, __u16 family)
{
	/* An IPv4-mapped IPv6 address (dual-stack socket) matches IPv4 ranges. */
	bool mapped = family == AF_INET6 && *(__u64 *)addr == 0 &&
		      *(__u16 *)(addr + 8) == 0 && *(__u16 *)(addr + 10) == 0xffff;

	for (int i = 0; i < TCPSPAN_MAX_CIDRS; i++) {
		if (i >= tcpspan_filter.n_cidrs)
			break;
		const volatile struct tcpspan_cidr *c = &tcpspan_filter.cidrs[i];

		if (c->family == family && prefix_match(addr, c->addr, c->prefix))
			return true;
		if (mapped && c->family == AF_INET && prefix_match(addr + 12, c->addr, c->prefix))
			return true;
	}
	return false;
}

static __always_inline bool port_match(__u16 port)
{
	for (int i = 0; i < TCPSPAN_MAX_PORTS; i++) {
		if (i >= tcpspan_filter.n_ports)
			break;
		if (tcpspan_filter.ports[i] == port)
			return true;
	}
	return false;
}

static __always_inline bool wanted(const struct tuple *t, __u32 netns)
{
	if (tcpspan_filter.netns && tcpspan_filter.netns != netns)
		return false;
	if (tcpspan_filter.n_ports && !port_match(t->lport) && !port_match(t->rport))
		return false;
	if (tcpspan_filter.n_cidrs && !addr_match(t->laddr, t->family) &&
	    !addr_match(t->raddr, t->family))
		return false;
	return true;
}

static __always_inline bool is_tcp_inet(const struct sock *sk)
{
	__u16 family = sk->__sk_common.skc_family;

	return sk->sk_protocol == IPPROTO_TCP && (family == AF_INET || family == AF_INET6);
}

static __always_inline void set_tuple(struct tcpspan_conn *c, const struct tuple *t)
{
	c->family = t->family;
	c->lport = t->lport;
	c->rport = t->rport;
	__builtin_memcpy(c->laddr, t->laddr, 16);
	__builtin_memcpy(c->raddr, t->raddr, 16);
}

/*
 * Refreshes the tuple while the kernel still has it: a client's port is chosen
 * after SYN_SENT, and the kernel clears it at unhash (before the CLOSE tracepoint
 * fires) and in tcp_disconnect().
 */
static __always_inline void refresh_tuple(struct tcpspan_conn *c, const struct sock *sk)
{
	struct tuple t = {};

	tuple_of(&sk->__sk_common, &t);
	if (!t.lport && !c->lport) {
		/* unhash cleared inet_num before CLOSE; inet_sport still holds the port */
		const struct inet_sock *inet = (const struct inet_sock *)sk;

		t.lport = bpf_ntohs(BPF_CORE_READ(inet, inet_sport));
	}
	if (t.lport && t.rport)
		set_tuple(c, &t);
}

/* Before 5.15 (8520e224f547, "cgroup: Fix cgroup v2 fallback on v1/v2 mixed mode"): a union. */
struct sock_cgroup_data___old {
	__u64 val;             /* the cgroup v2 pointer, unless bit 0 is set (v1 net_cls/net_prio data) */
};

/*
 * The socket's cgroup v2 id, its cgroup directory's inode number. The kernel sets the
 * socket's cgroup when the socket is made (the creating task's), and an accepted socket
 * takes its listener's: both ends have one, without process context.
 */
static __always_inline __u64 cgroup_of(const struct sock *sk)
{
	const struct cgroup *cg;

	if (bpf_core_field_exists(sk->sk_cgrp_data.cgroup)) {
		cg = sk->sk_cgrp_data.cgroup;
	} else {
		const struct sock_cgroup_data___old *old = (const void *)&sk->sk_cgrp_data;
		__u64 v = BPF_CORE_READ(old, val);

		if (v & 1)
			return 0;
		cg = (const struct cgroup *)v;
	}
	if (!cg)
		return 0;
	return BPF_CORE_READ(cg, kn, id);
}

/*
 * The socket's life, created on first sight when the filters accept it. NULL
 * when filtered out or when the map is full (counted).
 */
static __always_inline struct sock_info *track(const struct sock *sk, __u64 now, bool start)
{
	__u64 key = (__u64)sk;
	struct sock_info *si, *fresh;
	struct tuple t = {};
	__u32 netns, key_slot;
	int slot;
	long err;

	/* a start finds no life (it is new): skip the lookup that would miss */
	if (!start) {
		si = bpf_map_lookup_elem(&lives, &key);
		if (si)
			return si;
	}
	tuple_of(&sk->__sk_common, &t);
	netns = netns_of(&sk->__sk_common);
	if (!wanted(&t, netns))
		return NULL;
	slot = scratch_enter();
	if (slot < 0)
		return NULL;
	key_slot = slot;
	fresh = bpf_map_lookup_elem(&fresh_life, &key_slot);
	if (!fresh) {
		scratch_leave(slot);
		return NULL;
	}
	__builtin_memset(fresh, 0, sizeof(*fresh));
	fresh->c.cookie = bpf_get_socket_cookie((void *)sk);
	fresh->c.netns = netns;
	fresh->c.start_ns = now;
	fresh->c.cgroup_id = cgroup_of(sk);
	set_tuple(&fresh->c, &t);
	err = bpf_map_update_elem(&lives, &key, fresh, BPF_NOEXIST);
	scratch_leave(slot);
	if (err && err != -EEXIST) {
		count(TCPSPAN_C_SOCK_MAP_FULL);
		return NULL;
	}
	/* -EEXIST: a start on a socket that has a life (the caller restarts it) */
	return bpf_map_lookup_elem(&lives, &key);
}

static __always_inline struct sock_info *life_of_sock(const struct sock *sk)
{
	__u64 key = (__u64)sk;

	return bpf_map_lookup_elem(&lives, &key);
}

/*
 * A new life on a socket seen before: connect after a failed connect or a disconnect
 * (or, should a socket ever be freed without tcp_destroy_sock, a new socket at its address).
 */
static __always_inline void restart(struct sock_info *si, const struct sock *sk, __u64 now)
{
	__u32 netns = netns_of(&sk->__sk_common);

	__builtin_memset(si, 0, sizeof(*si));
	si->c.cookie = bpf_get_socket_cookie((void *)sk);
	si->c.netns = netns;
	si->c.start_ns = now;
	si->c.cgroup_id = cgroup_of(sk);
	refresh_tuple(&si->c, sk);
}

static __always_inline void take_stats(struct tcpspan_conn *c, const struct sock *sk)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return;
	c->flags |= TCPSPAN_F_STATS;
	c->bytes_acked = tp->bytes_acked;
	c->bytes_received = tp->bytes_received;
	c->segs_in = tp->segs_in;
	c->segs_out = tp->segs_out;
	c->total_retrans = tp->total_retrans;
	c->srtt_us = tp->srtt_us >> 3;
}

/* The current process, in process context (a system call): pid and executable name. */
static __always_inline void take_current(struct tcpspan_conn *c, struct task_struct *task)
{
	c->pid = bpf_get_current_pid_tgid() >> 32;
	/*
	 * The executable's name, as process.executable.name defines it: a
	 * thread's comm can be renamed (Node calls its main thread "MainThread").
	 */
	bpf_probe_read_kernel_str(c->comm, sizeof(c->comm), task->mm->exe_file->f_path.dentry->d_name.name);
	c->flags |= TCPSPAN_F_PID;
}

static __always_inline void take_task(struct tcpspan_conn *c, int newstate)
{
	if ((c->flags & TCPSPAN_F_PID) || !syscall_transition(newstate))
		return;
	take_current(c, bpf_get_current_task_btf());
}

static __always_inline void syn_key_of(struct syn_key *k, const struct tuple *t, __u64 netns_cookie)
{
	k->netns_cookie = netns_cookie;
	__builtin_memcpy(k->laddr, t->laddr, 16);
	__builtin_memcpy(k->raddr, t->raddr, 16);
	k->lport = t->lport;
	k->rport = t->rport;
	k->family = t->family;
}

/* A passive open: the SYN arrived before this socket existed. */
static __always_inline void syn_from_sockops(struct tcpspan_conn *c, const struct sock *sk)
{
	struct syn_key k = {};
	struct tuple t = {};
	__u64 *syn_ns;

	tuple_of(&sk->__sk_common, &t);
	syn_key_of(&k, &t, sk->__sk_common.skc_net.net->net_cookie);
	syn_ns = bpf_map_lookup_elem(&syn_times, &k);
	if (!syn_ns)
		return;
	if (*syn_ns && *syn_ns <= c->start_ns) {
		c->start_ns = *syn_ns;
		c->flags |= TCPSPAN_F_SYN_SOCKOPS;
	}
	bpf_map_delete_elem(&syn_times, &k);
}

/*
 * Without sock_ops: the handshake's last ACK gave the child its first RTT sample,
 * measured from the SYN-ACK (tcp_synack_rtt_meas). The SYN came just before that
 * SYN-ACK was sent, so ESTABLISHED minus the sample is the start, later than the
 * SYN by the kernel's SYN processing time.
 */
static __always_inline void syn_from_rtt(struct tcpspan_conn *c, __u64 now)
{
	__u64 rtt_ns = (__u64)c->srtt_us * 1000;

	if (!c->srtt_us || rtt_ns >= now || now - rtt_ns >= c->start_ns)
		return;
	c->start_ns = now - rtt_ns;
	c->flags |= TCPSPAN_F_SYN_RTT;
}

static __always_inline void emit_conn(struct sock_info *si, __u8 kind, __u64 now)
{
	/* reserve a record in the ring; a full ring is counted, and flagged on the life */
	struct tcpspan_conn *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(TCPSPAN_C_RINGBUF_FULL);
		si->c.flags |= TCPSPAN_F_LOST;
		return;
	}
	__builtin_memcpy(e, &si->c, sizeof(*e));
	e->ts_ns = now;
	e->kind = kind;
	bpf_ringbuf_submit(e, 0);
	count(TCPSPAN_C_SUBMITTED);
}

/* The state change the first copy of handle_set_state took last on this CPU (see below). */
struct set_state_mark {
	__u64 sk;
	__u32 states;          /* oldstate << 8 | newstate */
	__u32 _pad;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct set_state_mark);
} set_state_taken SEC(".maps");

static __always_inline int set_state(const struct sock *sk, const int oldstate, const int newstate);

/*
 * The kernel skips a tracing program's run while the same program is running on that CPU
 * (bpf_prog->active, counted in recursion_misses): a softirq's state change interrupting
 * handle_set_state in process context (connect, close, a backlog processed at release_sock)
 * would be lost. Measured: ~50 lost in 1,000 concurrent connections. So two copies are
 * attached, each with its own guard: the first marks every change it takes (per CPU, before
 * anything else); the spare, called after it for the same change, takes only what the first
 * did not mark: the changes the first missed while it was busy on this CPU.
 */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	struct set_state_mark *m = bpf_map_lookup_elem(&set_state_taken, &zero);

	if (m) {
		m->sk = (__u64)sk;
		m->states = (__u32)oldstate << 8 | (__u32)newstate;
	}
	return set_state(sk, oldstate, newstate);
}

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state_spare, const struct sock *sk, const int oldstate, const int newstate)
{
	__u32 zero = 0;
	struct set_state_mark *m = bpf_map_lookup_elem(&set_state_taken, &zero);

	if (m && m->sk == (__u64)sk && m->states == ((__u32)oldstate << 8 | (__u32)newstate))
		return 0; /* the first copy took it */
	return set_state(sk, oldstate, newstate);
}

/* How a socket first seen open took its local port: its bind bucket says (TCPSPAN_PORT_*). */
static __always_inline __u8 port_origin(const struct sock *sk)
{
	const struct inet_connection_sock *icsk = (const void *)sk;
	struct inet_bind_bucket *tb = BPF_CORE_READ(icsk, icsk_bind_hash);

	if (!tb)
		return TCPSPAN_PORT_UNKNOWN;
	return BPF_CORE_READ(tb, fastreuse) < 0 ? TCPSPAN_PORT_CONNECT : TCPSPAN_PORT_BOUND;
}

static __always_inline int set_state(const struct sock *sk, const int oldstate, const int newstate)
{
	struct sock_info *si;
	struct tcpspan_conn *c;
	__u64 now;
	bool start;
	__u8 n;

	if (!is_tcp_inet(sk))
		return 0;
	/* listening sockets are not connections */
	if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
		return 0;

	now = bpf_ktime_get_ns();
	start = (oldstate == TCP_CLOSE && newstate == TCP_SYN_SENT) ||
		(oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV);
	si = track(sk, now, start);
	if (!si)
		return 0;
	c = &si->c;
	if (start && (c->n_trans || si->closed))
		restart(si, sk, now);
	else if (si->closed)
		return 0; /* nothing after CLOSE until a new start */

	n = c->n_trans;
	if (n == 0) {
		c->first_oldstate = oldstate;
		if (!start)
			c->port_origin = port_origin(sk);
	}
	if (n < TCPSPAN_MAX_TRANSITIONS) {
		c->trans_ns[n & (TCPSPAN_MAX_TRANSITIONS - 1)] = now;
		c->trans_state[n & (TCPSPAN_MAX_TRANSITIONS - 1)] = newstate;
	}
	if (n < 255)
		c->n_trans = n + 1;
	c->state = newstate;
	take_task(c, newstate);

	if (newstate == TCP_ESTABLISHED) {
		struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

		refresh_tuple(c, sk);
		take_stats(c, sk);
		if (tp) {
			/* both ends see the same pair: the basis of a shared trace id */
			c->flags |= TCPSPAN_F_ISN;
			c->isn_local = tp->snd_una - 1;
			c->isn_peer = tp->rcv_nxt - 1;
		}
		if (c->first_oldstate == TCP_LISTEN && c->trans_state[0] == TCP_SYN_RECV) {
			if (tcpspan_filter.syn_sockops)
				syn_from_sockops(c, sk);
			if (!(c->flags & TCPSPAN_F_SYN_SOCKOPS))
				syn_from_rtt(c, now);
		}
		emit_conn(si, TCPSPAN_EV_OPEN, now);
	} else if (newstate == TCP_CLOSE || newstate == TCP_TIME_WAIT) {
		/* TIME_WAIT: older kernels may report it for the full socket; the end is the same */
		refresh_tuple(c, sk);
		take_stats(c, sk);
		c->error = sk->sk_err;
		/* tcp_fin() sets SOCK_DONE before FIN_WAIT2 hands over to timewait: tells it from an orphan's early handover */
		if (sk->__sk_common.skc_flags & (1UL << bpf_core_enum_value(enum sock_flags, SOCK_DONE)))
			c->flags |= TCPSPAN_F_PEER_FIN;
		emit_conn(si, TCPSPAN_EV_CLOSE, now);
		si->closed = 1;
	}
	return 0;
}

static __always_inline struct tcpspan_event *reserve_event(void)
{
	struct tcpspan_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(TCPSPAN_C_RINGBUF_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	e->ts_ns = bpf_ktime_get_ns();
	return e;
}

static __always_inline void submit_event(struct tcpspan_event *e)
{
	bpf_ringbuf_submit(e, 0);
	count(TCPSPAN_C_SUBMITTED);
}

static __always_inline void event_tuple(struct tcpspan_event *e, const struct tuple *t, __u32 netns)
{
	e->netns = netns;
	e->family = t->family;
	e->lport = t->lport;
	e->rport = t->rport;
	__builtin_memcpy(e->laddr, t->laddr, 16);
	__builtin_memcpy(e->raddr, t->raddr, 16);
}

/* An event with no socket of its own (cookie 0): filter on its tuple, emit one record. */
static __always_inline void tuple_event(__u8 kind, const struct tuple *t, __u32 netns, __u8 state,
					__u8 tcp_flags)
{
	struct tcpspan_event *e;

	if (!wanted(t, netns))
		return;
	e = reserve_event();
	if (!e)
		return;
	event_tuple(e, t, netns);
	e->kind = kind;
	e->state = state;
	e->tcp_flags = tcp_flags;
	e->flags = TCPSPAN_F_UNTRACKED;
	if (kind == TCPSPAN_EV_SYNACK_RETRANSMIT)
		e->segs = 1;
	submit_event(e);
}

#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04
#define TCP_FLAG_ACK 0x10

/* A listening port's entry, made on first use (NULL only if the LRU map refused it). */
static __always_inline struct tcpspan_listen_stats *listen_stats(__u32 netns, __u16 lport)
{
	struct tcpspan_listen_key k = { .netns = netns, .lport = lport };
	struct tcpspan_listen_stats *st = bpf_map_lookup_elem(&listen_ports, &k);
	struct tcpspan_listen_stats zero = {};

	if (st)
		return st;
	bpf_map_update_elem(&listen_ports, &k, &zero, BPF_NOEXIST);
	return bpf_map_lookup_elem(&listen_ports, &k);
}

/*
 * The listener's queues as of now: half-open connections (request sockets, qlen) and the
 * backlog both queues are limited by. The peak restarts when user space bumps the epoch.
 * Plain stores: two CPUs racing here leave one of two equally fresh readings.
 */
static __always_inline __u32 listen_seen(struct tcpspan_listen_stats *st, const struct tcp_sock *tp, __u32 leaving)
{
	__u32 qlen = tp->inet_conn.icsk_accept_queue.qlen.counter;
	__u32 zero = 0, *epoch = bpf_map_lookup_elem(&detect_epoch, &zero);
	__u32 e = epoch ? *epoch : 0;

	qlen = qlen > leaving ? qlen - leaving : 0;
	st->qlen = qlen;
	st->backlog = tp->inet_conn.icsk_inet.sk.sk_max_ack_backlog;
	st->seen_ns = bpf_ktime_get_ns();
	if (st->epoch != e) {
		st->epoch = e;
		st->qlen_peak = qlen;
	} else if (qlen > st->qlen_peak) {
		st->qlen_peak = qlen;
	}
	return qlen;
}

static __always_inline __u8 life_of(const struct tcpspan_conn *c)
{
	if (!c->n_trans)
		return TCPSPAN_LIFE_MIDWAY;
	if (c->first_oldstate == TCP_CLOSE && c->trans_state[0] == TCP_SYN_SENT)
		return TCPSPAN_LIFE_CLIENT;
	if (c->first_oldstate == TCP_LISTEN && c->trans_state[0] == TCP_SYN_RECV)
		return TCPSPAN_LIFE_SERVER;
	return TCPSPAN_LIFE_MIDWAY;
}

/*
 * An event about an existing socket. A full socket gets (or already has) a life,
 * so its counts are exact even when the record is lost; a timewait socket has
 * none and is filtered on its tuple. NULL: filtered out, or the ring is full.
 */
static __always_inline struct tcpspan_event *socket_event(const struct sock *sk, __u8 kind,
							  struct sock_info **sip)
{
	struct tcpspan_event *e;
	struct sock_info *si = NULL;
	__u8 state = sk->__sk_common.skc_state;
	struct tuple t = {};
	__u64 cookie;
	__u32 netns;

	tuple_of(&sk->__sk_common, &t);
	netns = netns_of(&sk->__sk_common);
	cookie = bpf_get_socket_cookie((void *)sk);
	if (state == TCP_TIME_WAIT || state == TCP_NEW_SYN_RECV)
		si = NULL; /* not the full socket: a timewait or request socket has no life */
	else if (state == TCP_CLOSE)
		si = life_of_sock(sk); /* a closed socket starts no life */
	else
		si = track(sk, bpf_ktime_get_ns(), false);
	if (si) {
		if (!t.lport || !t.rport) {
			/* cleared at unhash or disconnect: the life remembers them */
			__builtin_memcpy(t.laddr, si->c.laddr, 16);
			__builtin_memcpy(t.raddr, si->c.raddr, 16);
			t.lport = si->c.lport;
			t.rport = si->c.rport;
		} else if (!si->closed) {
			/* a client's port is chosen after SYN_SENT and gone at CLOSE: keep it while seen */
			set_tuple(&si->c, &t);
		}
		if (si->closed)
			si = NULL; /* a trailing event of a closed life */
	} else if (!wanted(&t, netns)) {
		return NULL;
	}
	e = reserve_event();
	if (!e) {
		if (si)
			si->c.flags |= TCPSPAN_F_LOST;
		return NULL;
	}
	event_tuple(e, &t, netns);
	e->kind = kind;
	e->state = state;
	e->cookie = cookie;
	if (si) {
		e->life = life_of(&si->c);
		/* a server's start_ns moves to the SYN at ESTABLISHED: its first transition does not */
		e->life_start_ns = e->life == TCPSPAN_LIFE_MIDWAY ? si->c.start_ns : si->c.trans_ns[0];
	} else {
		e->flags = TCPSPAN_F_UNTRACKED;
	}
	*sip = si;
	return e;
}

static __always_inline int retransmit(const struct sock *sk, const struct sk_buff *skb, int err)
{
	struct sock_info *si = NULL;
	struct tcp_skb_cb *cb;
	struct tcpspan_event *e;
	__u16 segs;

	cb = (struct tcp_skb_cb *)&skb->cb[0];
	/* skb->cb is a char array to the verifier: read the TCP view of it with CO-RE */
	segs = BPF_CORE_READ(cb, tcp_gso_segs);
	e = socket_event(sk, TCPSPAN_EV_RETRANSMIT, &si);
	if (!e) {
		/* the record is lost (counted); the life's counts stay exact */
		si = life_of_sock(sk);
		if (si && !si->closed) {
			if (err)
				si->c.retrans_failed++;
			else
				si->c.retrans_segs += segs;
		}
		return 0;
	}
	if (si) {
		if (err)
			si->c.retrans_failed++;
		else
			si->c.retrans_segs += segs;
	}
	e->seq = BPF_CORE_READ(cb, seq);
	e->segs = segs;
	e->tcp_flags = BPF_CORE_READ(cb, tcp_flags);
	e->error = err;
	submit_event(e);
	return 0;
}

/*
 * Since 6.10 the tracepoint has a third argument, err, and also fires for
 * retransmits that failed. The loader keeps the one variant that matches the
 * running kernel's tracepoint (checked in its BTF).
 */
SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit, const struct sock *sk, const struct sk_buff *skb, int err)
{
	return retransmit(sk, skb, err);
}

SEC("tp_btf/tcp_retransmit_skb")
int BPF_PROG(handle_retransmit_noerr, const struct sock *sk, const struct sk_buff *skb)
{
	return retransmit(sk, skb, 0);
}

SEC("tp_btf/tcp_retransmit_synack")
int BPF_PROG(handle_retransmit_synack, const struct sock *sk, const struct request_sock *req)
{
	struct tcpspan_listen_stats *st;
	struct tcp_sock *tp;
	struct tuple t = {};
	__u32 netns = netns_of(&sk->__sk_common);

	tuple_of(&req->__req_common, &t);
	tuple_event(TCPSPAN_EV_SYNACK_RETRANSMIT, &t, netns, TCP_SYN_RECV, TCP_FLAG_SYN | TCP_FLAG_ACK);
	/* sk is the listener: its queue, fresh while requests wait */
	if (!tcpspan_filter.detect || !wanted(&t, netns))
		return 0;
	tp = bpf_skc_to_tcp_sock((void *)sk);
	st = tp ? listen_stats(netns, t.lport) : NULL;
	if (!st)
		return 0;
	listen_seen(st, tp, 0);
	__sync_fetch_and_add(&st->synack_retrans, 1);
	return 0;
}

/* The socket is gone: so is its life. */
SEC("tp_btf/tcp_destroy_sock")
int BPF_PROG(handle_destroy_sock, struct sock *sk)
{
	__u64 key = (__u64)sk;

	bpf_map_delete_elem(&lives, &key);
	return 0;
}

#define TCPHDR_ACK 0x10

/*
 * The tcp_sock counters as they will be once this received segment is processed, into the
 * life, so checkpoints of long-lived connections (user space reads the lives every
 * correlator.checkpointMs) see current totals, not those of the Open record. tcp_probe fires
 * at the start of tcp_rcv_established, before the segment's ACK and data are taken: add what
 * tcp_ack (tcp_snd_una_update) and in-order queueing (tcp_rcv_nxt_update) will count, with
 * their acceptance tests; otherwise a sender's total would lag one ACK behind until the next
 * segment, which on an idle pool connection never comes. An ACK the kernel rejects later
 * (PAWS) is caught up by the next one; the Close record reads the counters themselves.
 */
static __always_inline void take_live_stats(struct tcpspan_conn *c, const struct tcp_sock *tp,
					    const struct sk_buff *skb, __u32 srtt)
{
	/*
	 * skb->cb is a char array to the verifier, but it lets a program load any width from such
	 * an array (the kernel's own example is skb->cb): direct loads at the tcp_skb_cb's field
	 * offsets, found by CO-RE (ack_seq moved from 16 to 20 when tcp_flags became __u16 in 6.1),
	 * cost far less than a probe read.
	 */
	const __u8 *cb = (const __u8 *)skb->cb;
	__u64 acked = tp->bytes_acked, received = tp->bytes_received;
	__u32 una = tp->snd_una, rcv_nxt = tp->rcv_nxt;
	__u32 seq = *(const __u32 *)(cb + bpf_core_field_offset(struct tcp_skb_cb, seq));
	__u32 end_seq = *(const __u32 *)(cb + bpf_core_field_offset(struct tcp_skb_cb, end_seq));
	__u32 ack = *(const __u32 *)(cb + bpf_core_field_offset(struct tcp_skb_cb, ack_seq));
	/* tcp_flags' low byte holds FIN..CWR, whether it is a __u8 or a __u16 */
	__u8 flags = cb[bpf_core_field_offset(struct tcp_skb_cb, tcp_flags)];

	/* what tcp_ack will count: an ACK that advances snd_una and acknowledges nothing unsent */
	if ((flags & TCPHDR_ACK) && (__s32)(ack - una) > 0 && (__s32)(ack - tp->snd_nxt) <= 0)
		acked += ack - una;
	/* what in-order queueing will count: data (or FIN) starting at rcv_nxt */
	if (seq == rcv_nxt && (__s32)(end_seq - seq) > 0)
		received += end_seq - seq;
	c->flags |= TCPSPAN_F_STATS;
	c->bytes_acked = acked;
	c->bytes_received = received;
	c->segs_in = tp->segs_in; /* counted in tcp_v4_rcv/tcp_v6_rcv, before this */
	c->segs_out = tp->segs_out;
	c->srtt_us = srtt;
}

/* Per received segment: the RTT summary, which the span reports, and the counters so far. */
SEC("tp_btf/tcp_probe")
int BPF_PROG(handle_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_sock *tp;
	struct sock_info *si;
	__u32 srtt;

	/* a connection open before tcpspan started: summarise it from now on */
	si = track(sk, bpf_ktime_get_ns(), false);
	if (!si)
		return 0;
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;
	/* tcp_probe fires before this segment's ACK is processed: srtt as of now */
	srtt = tp->srtt_us >> 3;
	if (srtt) {
		si->c.rtt_count++;
		si->c.rtt_sum_us += srtt;
		if (!si->c.rtt_min_us || srtt < si->c.rtt_min_us)
			si->c.rtt_min_us = srtt;
		if (srtt > si->c.rtt_max_us)
			si->c.rtt_max_us = srtt;
	}
	if (!si->closed)
		take_live_stats(&si->c, tp, skb, srtt);
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, struct sock *sk)
{
	struct sock_info *si = NULL;
	struct tcpspan_event *e = socket_event(sk, TCPSPAN_EV_RESET_RECEIVED, &si);

	if (e)
		submit_event(e);
	return 0;
}

/* A reset sent for a packet no socket wanted (e.g. a SYN to a closed port). */
static __always_inline int reset_without_socket(const struct sk_buff *skb)
{
	unsigned char *head = skb->head;
	__u16 nh = skb->network_header;
	__u16 th_off = skb->transport_header;
	__u16 proto = bpf_ntohs(skb->protocol);
	struct tuple t = {};
	__u16 ports[2];
	__u8 flags = 0;

	if (proto == ETH_P_IP) {
		t.family = AF_INET;
		/* the offending packet came to us: its destination is the local end */
		bpf_probe_read_kernel(t.raddr, 4, head + nh + 12);
		bpf_probe_read_kernel(t.laddr, 4, head + nh + 16);
	} else if (proto == ETH_P_IPV6) {
		t.family = AF_INET6;
		bpf_probe_read_kernel(t.raddr, 16, head + nh + 8);
		bpf_probe_read_kernel(t.laddr, 16, head + nh + 24);
	} else {
		return 0;
	}
	bpf_probe_read_kernel(ports, sizeof(ports), head + th_off);
	t.rport = bpf_ntohs(ports[0]);
	t.lport = bpf_ntohs(ports[1]);
	/* what it answered: a SYN here is a connection refused by a closed port */
	bpf_probe_read_kernel(&flags, 1, head + th_off + 13);
	tuple_event(TCPSPAN_EV_RESET_SENT, &t, skb->dev->nd_net.net->ns.inum, TCP_CLOSE, flags);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct sock_info *si = NULL;
	struct tcpspan_event *e;

	if (!sk)
		return skb ? reset_without_socket(skb) : 0;
	/* sk may be a timewait socket: socket_event reads only sock_common fields of those */
	e = socket_event(sk, TCPSPAN_EV_RESET_SENT, &si);
	if (e)
		submit_event(e);
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report, const struct sock *sk)
{
	struct sock_info *si = NULL;
	struct tcpspan_event *e;

	if (!is_tcp_inet(sk))
		return 0;
	e = socket_event(sk, TCPSPAN_EV_ERROR, &si);
	if (!e)
		return 0;
	e->error = sk->sk_err;
	submit_event(e);
	return 0;
}

/*
 * The SYN's arrival. The child socket, and its transition to SYN_RECV, exist
 * only once the handshake completes; the request socket is created when the
 * SYN arrives, and sock_ops sees that (TIMEOUT_INIT runs once per request).
 */
SEC("sockops")
int handle_sockops(struct bpf_sock_ops *skops)
{
	struct syn_key k = {};
	struct tuple t = {};
	__u64 now;

	if (skops->op != BPF_SOCK_OPS_TIMEOUT_INIT || skops->is_fullsock)
		return 1;
	t.family = skops->family;
	if (t.family != AF_INET && t.family != AF_INET6)
		return 1;
	t.lport = skops->local_port;
	t.rport = bpf_ntohl(skops->remote_port) & 0xffff;
	/* one ctx load per field: the verifier rejects loads through a computed ctx pointer */
	if (t.family == AF_INET) {
		__u32 l4 = skops->local_ip4, r4 = skops->remote_ip4;

		__builtin_memcpy(t.laddr, &l4, 4);
		__builtin_memcpy(t.raddr, &r4, 4);
	} else {
		__u32 l[4], r[4];

		l[0] = skops->local_ip6[0];
		l[1] = skops->local_ip6[1];
		l[2] = skops->local_ip6[2];
		l[3] = skops->local_ip6[3];
		r[0] = skops->remote_ip6[0];
		r[1] = skops->remote_ip6[1];
		r[2] = skops->remote_ip6[2];
		r[3] = skops->remote_ip6[3];
		asm volatile("" ::: "memory");
		__builtin_memcpy(t.laddr, l, 16);
		__builtin_memcpy(t.raddr, r, 16);
	}
	if (tcpspan_filter.n_ports && !port_match(t.lport) && !port_match(t.rport))
		return 1;
	syn_key_of(&k, &t, bpf_get_netns_cookie(skops));
	now = bpf_ktime_get_ns();
	if (bpf_map_update_elem(&syn_times, &k, &now, BPF_ANY))
		count(TCPSPAN_C_SYN_MAP_FULL);
	return 1;
}

/* A syscalls:sys_exit_* tracepoint's record, as tracefs's format file lays it out. */
struct syscall_exit {
	__u64 common;          /* common_type, common_flags, common_preempt_count, common_pid */
	__s32 nr;              /* __syscall_nr */
	__s32 _pad;
	__s64 ret;
};

#define S_IFMT 00170000
#define S_IFSOCK 0140000

/*
 * accept() returned fd: the current process took a server end. Its life (made at
 * SYN_RECV, in softirq, with no process to name) gets this pid unless it has one,
 * so a server end that its peer resets before its process closes it still says
 * whose it was. Lives exist only for what wanted() let through, so the lookup is
 * the filter; a socket of another family or protocol returns before it.
 */
static __always_inline int accepted(long fd)
{
	struct task_struct *task = bpf_get_current_task_btf();
	struct sock_info *si;
	struct fdtable *fdt;
	struct file **fds;
	struct file *file;
	struct socket *sock;
	struct sock *sk;
	__u16 family;
	__u64 key;

	if (fd < 0 || (task->flags & PF_KTHREAD))
		return 0;
	/* current->files->fdt->fd[fd]: typed loads up to the array, whose variable index takes a probe read */
	fdt = task->files->fdt;
	if (!fdt || fd >= fdt->max_fds)
		return 0;
	fds = fdt->fd;
	if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file)
		return 0;
	/* from here on the pointers are plain numbers to the verifier: each step is a probe read */
	/* a socket's file: a sockfs inode, whose socket points back at the file */
	if ((BPF_CORE_READ(file, f_inode, i_mode) & S_IFMT) != S_IFSOCK)
		return 0;
	sock = BPF_CORE_READ(file, private_data);
	if (!sock || BPF_CORE_READ(sock, file) != file)
		return 0;
	sk = BPF_CORE_READ(sock, sk);
	if (!sk || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
		return 0;
	family = BPF_CORE_READ(sk, __sk_common.skc_family);
	if (family != AF_INET && family != AF_INET6)
		return 0;
	key = (__u64)sk;
	si = bpf_map_lookup_elem(&lives, &key);
	/* no life: filtered out (or untracked); a closed one has sent its Close already */
	if (!si || si->closed || (si->c.flags & TCPSPAN_F_PID))
		return 0;
	take_current(&si->c, task);
	return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int handle_accept4(struct syscall_exit *ctx)
{
	return accepted(ctx->ret);
}

SEC("tracepoint/syscalls/sys_exit_accept")
int handle_accept(struct syscall_exit *ctx)
{
	return accepted(ctx->ret);
}

/*
 * Payload inspection (opt-in: inspect.traceparent, inspect.protocols). The loader leaves
 * these programs out unless an inspect option is on, so by default no program reads
 * payload bytes. They observe only: they always return 1 (pass), never drop or alter.
 *
 * Only segments with payload of full TCP sockets that have a life (so the filters have
 * accepted them) are looked at, and only two kinds are sent, each as one variable-length
 * record holding at most TCPSPAN_PAYLOAD_MAX bytes of the segment's head:
 *   - a segment whose payload begins with an HTTP/1.x method token (inspect.traceparent):
 *     user space finds the traceparent header in it (src/inspect/traceparent.ts);
 *   - the first payload segment of each direction of a life (inspect.protocols): user space
 *     identifies the protocol from it (src/inspect/protocol.ts).
 * Parsing stays in user space, on tcpspan's core: a bounded header scan here would run on
 * the traced workload's core for every request.
 */

/* A payload record is made here, then copied to the ring at its length. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCRATCH_SLOTS);
	__type(key, __u32);
	__type(value, struct tcpspan_payload);
} payload_scratch SEC(".maps");

#define WORD4(a, b, c, d) ((__u32)(a) | (__u32)(b) << 8 | (__u32)(c) << 16 | (__u32)(d) << 24)

/* The first four payload bytes (as loaded, little-endian) begin an HTTP/1.x request. */
static __always_inline bool http_method(__u32 w)
{
	switch (w) {
	case WORD4('G', 'E', 'T', ' '):
	case WORD4('P', 'O', 'S', 'T'):
	case WORD4('P', 'U', 'T', ' '):
	case WORD4('H', 'E', 'A', 'D'):
	case WORD4('D', 'E', 'L', 'E'):
	case WORD4('P', 'A', 'T', 'C'):
	case WORD4('O', 'P', 'T', 'I'):
	case WORD4('C', 'O', 'N', 'N'):
	case WORD4('T', 'R', 'A', 'C'):
		return true;
	}
	return false;
}

static __always_inline void emit_payload(struct __sk_buff *skb, struct tcpspan_payload *p, struct sock_info *si,
					 struct tcp_sock *tp, __u32 off, __u32 seg_len, __u32 seq, __u8 dir, __u8 what);

static __always_inline int inspect_skb(struct __sk_buff *skb, __u8 dir)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct bpf_sock *bsk = skb->sk;
	struct tcpspan_payload *p;
	struct sock_info *si;
	struct tcp_sock *tp;
	struct tcphdr *th;
	__u32 ip_len, off, seg_len, seq, word = 0, key_slot;
	int slot;
	__u64 key;
	__u8 what = 0;

	/*
	 * Every segment of every socket comes here: the headers are read in place (they are
	 * in the linear data), no helper is called until the segment is known to carry payload.
	 * skb data starts at the network header, in both directions.
	 */
	if (!bsk)
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return 1;
		ip_len = ip->ihl * 4;
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		/* extension headers before TCP are not followed: such segments are not inspected */
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return 1;
		ip_len = sizeof(*ip6);
	} else {
		return 1;
	}
	ip_len &= 0x7f; /* for the verifier: at most 60 (IPv4) or 40 (IPv6) */
	th = data + ip_len;
	if ((void *)(th + 1) > data_end)
		return 1;
	off = ip_len + th->doff * 4;
	if (skb->len <= off)
		return 1; /* no payload: SYN, ACK, FIN */
	seg_len = skb->len - off;
	seq = bpf_ntohl(th->seq);

	/* a full TCP socket, or nothing */
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;
	/* cheap tests first, so most segments cost no map lookup */
	if ((tcpspan_filter.inspect & TCPSPAN_INSPECT_TRACEPARENT) && seg_len >= 16 &&
	    !bpf_skb_load_bytes(skb, off, &word, 4) && http_method(word))
		what |= TCPSPAN_P_REQUEST;
	/*
	 * The first payload each way: nothing sent before this segment (__tcp_transmit_skb counts
	 * it in bytes_sent before the egress hook runs), or nothing received yet (ingress runs
	 * before the receive path counts it). The life's bit below makes it once per life.
	 */
	if ((tcpspan_filter.inspect & TCPSPAN_INSPECT_PROTOCOLS) &&
	    (dir == TCPSPAN_DIR_EGRESS ? tp->bytes_sent == seg_len : tp->bytes_received == 0))
		what |= TCPSPAN_P_FIRST;
	if (!what)
		return 1;

	/* the socket's life: tracked and wanted by the filters, or not looked at */
	key = (__u64)tp;
	si = bpf_map_lookup_elem(&lives, &key);
	if (!si || si->closed)
		return 1;
	if (what & TCPSPAN_P_FIRST) {
		if (si->inspected & dir)
			what &= ~TCPSPAN_P_FIRST;
		si->inspected |= dir;
	}
	if (!what)
		return 1;

	slot = scratch_enter();
	if (slot < 0)
		return 1;
	key_slot = slot;
	p = bpf_map_lookup_elem(&payload_scratch, &key_slot);
	if (!p) {
		scratch_leave(slot);
		return 1;
	}
	emit_payload(skb, p, si, tp, off, seg_len, seq, dir, what);
	scratch_leave(slot);
	return 1;
}

/* Fills the scratch record `p` from the segment and writes it to the ring. */
static __always_inline void emit_payload(struct __sk_buff *skb, struct tcpspan_payload *p, struct sock_info *si,
					 struct tcp_sock *tp, __u32 off, __u32 seg_len, __u32 seq, __u8 dir, __u8 what)
{
	__u32 len;

	len = seg_len < TCPSPAN_PAYLOAD_MAX ? seg_len : TCPSPAN_PAYLOAD_MAX;
	/* the same value (1..TCPSPAN_PAYLOAD_MAX), in a form the verifier can bound; hidden from the compiler */
	asm volatile("" : "+r"(len));
	len = ((len - 1) & (TCPSPAN_PAYLOAD_MAX - 1)) + 1;
	if (bpf_skb_load_bytes(skb, off, p->data, len))
		return;
	p->ts_ns = bpf_ktime_get_ns();
	p->cookie = si->c.cookie;
	__builtin_memcpy(p->laddr, si->c.laddr, 16);
	__builtin_memcpy(p->raddr, si->c.raddr, 16);
	p->netns = si->c.netns;
	p->lport = si->c.lport;
	p->rport = si->c.rport;
	p->family = si->c.family;
	p->kind = TCPSPAN_EV_PAYLOAD;
	p->flags = 0;
	p->state = tp->inet_conn.icsk_inet.sk.__sk_common.skc_state;
	p->life = life_of(&si->c);
	p->life_start_ns = p->life == TCPSPAN_LIFE_MIDWAY ? si->c.start_ns : si->c.trans_ns[0];
	p->seq = seq;
	p->seg_len = seg_len;
	p->len = len;
	p->dir = dir;
	p->what = what;
	/* only the bytes copied go to the ring; flags 0: the reader batches its wake-ups */
	if (bpf_ringbuf_output(&events, p, offsetof(struct tcpspan_payload, data) + len, 0)) {
		count(TCPSPAN_C_RINGBUF_FULL);
		si->c.flags |= TCPSPAN_F_LOST;
		return;
	}
	count(TCPSPAN_C_SUBMITTED);
}

SEC("cgroup_skb/egress")
int handle_egress(struct __sk_buff *skb)
{
	return inspect_skb(skb, TCPSPAN_DIR_EGRESS);
}

SEC("cgroup_skb/ingress")
int handle_ingress(struct __sk_buff *skb)
{
	return inspect_skb(skb, TCPSPAN_DIR_INGRESS);
}

/*
 * SYN accounting (detect.*): every segment a local socket receives passes here, and leaves at
 * once unless its socket is a listener (a SYN, the ACK completing a handshake, or an RST). For
 * a SYN, the listener's entry counts it and notes the queues it found, before the kernel
 * decides to queue, cookie or drop it (tcp_filter runs first), so dropped SYNs are counted too;
 * no record is sent. An RST reaching a listener ends a handshake in progress (a SYN scan's
 * answer to the SYN-ACK) or finds none: one record, for the scan detector. Observes only:
 * always returns 1 (pass).
 */
SEC("cgroup_skb/ingress")
int handle_listen_ingress(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;
	struct bpf_sock *bsk = skb->sk;
	struct tcpspan_listen_stats *st;
	struct tcpspan_syn_source_key sk = {};
	struct tcp_sock *tp;
	struct tcphdr *th;
	struct tuple t = {};
	__u32 ip_len, netns, qlen, backlog;
	__u64 one = 1, *n;
	__u8 flags;

	if (!bsk || bsk->state != BPF_TCP_LISTEN)
		return 1;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = data;

		if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP)
			return 1;
		ip_len = ip->ihl * 4;
		t.family = AF_INET;
		__builtin_memcpy(t.raddr, &ip->saddr, 4);
		__builtin_memcpy(t.laddr, &ip->daddr, 4);
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = data;

		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP)
			return 1;
		ip_len = sizeof(*ip6);
		t.family = AF_INET6;
		__builtin_memcpy(t.raddr, &ip6->saddr, 16);
		__builtin_memcpy(t.laddr, &ip6->daddr, 16);
	} else {
		return 1;
	}
	ip_len &= 0x7f; /* for the verifier: at most 60 (IPv4) or 40 (IPv6) */
	th = data + ip_len;
	if ((void *)(th + 1) > data_end)
		return 1;
	t.rport = bpf_ntohs(th->source);
	t.lport = bpf_ntohs(th->dest);
	flags = ((__u8 *)th)[13];
	tp = bpf_skc_to_tcp_sock(bsk);
	if (!tp)
		return 1;
	netns = tp->inet_conn.icsk_inet.sk.__sk_common.skc_net.net->ns.inum;
	if (!wanted(&t, netns))
		return 1;

	if (flags & TCP_FLAG_RST) {
		tuple_event(TCPSPAN_EV_HALF_OPEN_RESET, &t, netns, TCP_SYN_RECV, flags);
		return 1;
	}
	if ((flags & (TCP_FLAG_SYN | TCP_FLAG_ACK)) != TCP_FLAG_SYN) {
		/*
		 * The ACK completing a handshake: refresh the queue of a port already counted, without
		 * the request this ACK is about to turn into a connection (a SYN cookie's ACK has none:
		 * then one too few, under a flood).
		 */
		struct tcpspan_listen_key k = { .netns = netns, .lport = t.lport };

		st = bpf_map_lookup_elem(&listen_ports, &k);
		if (st)
			listen_seen(st, tp, 1);
		return 1;
	}
	st = listen_stats(netns, t.lport);
	if (!st)
		return 1;
	qlen = listen_seen(st, tp, 0);
	backlog = st->backlog;
	__sync_fetch_and_add(&st->syns, 1);
	/* as tcp_conn_request() will decide: inet_csk_reqsk_queue_is_full(), sk_acceptq_is_full() */
	if (qlen > backlog)
		__sync_fetch_and_add(&st->queue_full, 1);
	if (tp->inet_conn.icsk_inet.sk.sk_ack_backlog > backlog)
		__sync_fetch_and_add(&st->accept_full, 1);
	/* under pressure only: who sends the SYNs */
	if (qlen * 2 < backlog)
		return 1;
	__builtin_memcpy(sk.saddr, t.raddr, 16);
	sk.netns = netns;
	sk.lport = t.lport;
	sk.family = t.family;
	n = bpf_map_lookup_elem(&syn_sources, &sk);
	if (n)
		__sync_fetch_and_add(n, 1);
	else
		bpf_map_update_elem(&syn_sources, &sk, &one, BPF_NOEXIST);
	return 1;
}
