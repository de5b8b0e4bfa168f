// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * tcpspan kernel side: TCP lifecycle events from tracepoints (BTF-typed, so
 * they attach without tracefs), summarised per socket in the kernel.
 *
 * Programs:
 *   tp_btf/inet_sock_set_state   every state transition (both ends)
 *   tp_btf/tcp_retransmit_skb    every retransmitted segment
 *   tp_btf/tcp_retransmit_synack every retransmitted SYN-ACK
 *   tp_btf/tcp_probe             receive path: RTT and byte summary per socket, no record
 *   tp_btf/tcp_receive_reset     RST received
 *   tp_btf/tcp_send_reset        RST sent
 *   tp_btf/inet_sk_error_report  socket errors (ECONNREFUSED, ETIMEDOUT, ...)
 *   sockops                      when a SYN reached a listener (no tracepoint reports it)
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

char LICENSE[] SEC("license") = "Dual BSD/GPL";

/* Filters, fixed before load: the kernel drops what nobody asked for. */
const volatile struct tcpspan_filter tcpspan_filter = {};

/* Keep the wire structs in BTF so user space can check its layout against them. */
const struct tcpspan_event *unused_event __attribute__((unused));
const struct tcpspan_counters *unused_counters __attribute__((unused));

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20); /* resized by the loader */
} events SEC(".maps");

/* Per-socket summary. */
struct sock_info {
	__u64 syn_ns;
	__u64 rx_bytes;
	__u64 rtt_sum_us;
	__u32 rtt_count;
	__u32 rtt_min_us;
	__u32 rtt_max_us;
	__u32 rx_segs;
	__u32 pid;
	__u16 flags;
	/* the kernel clears the ports at CLOSE (unhash) and in tcp_disconnect(); keep the tuple stable */
	__u16 lport;
	__u16 rport;
	__u16 _pad[3];
	char comm[TCPSPAN_COMM_LEN];
};

/*
 * Socket-local storage: found from the socket in one step, freed with the
 * socket, so events after CLOSE (an abortive close's RST, an error report)
 * still find it and no map can fill up with closed sockets.
 */
struct {
	__uint(type, BPF_MAP_TYPE_SK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct sock_info);
} socks SEC(".maps");

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

static __always_inline void count(__u32 which)
{
	__u32 zero = 0;
	struct tcpspan_counters *c = bpf_map_lookup_elem(&counters, &zero);

	if (c && which < TCPSPAN_C_NR)
		c->c[which]++;
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

/*
 * The socket's summary, created on first sight when the filters accept it and
 * `create` is set. *filtered is set when the filters refuse it.
 */
static __always_inline struct sock_info *track(const struct sock *sk, const struct tuple *t,
					       __u32 netns, bool create, bool *filtered)
{
	struct sock_info *si = bpf_sk_storage_get(&socks, (void *)sk, NULL, 0);

	*filtered = false;
	if (si)
		return si;
	if (!wanted(t, netns)) {
		*filtered = true;
		return NULL;
	}
	if (!create)
		return NULL;
	si = bpf_sk_storage_get(&socks, (void *)sk, NULL, BPF_SK_STORAGE_GET_F_CREATE);
	if (!si)
		count(TCPSPAN_C_SOCK_MAP_FULL);
	return si;
}

static __always_inline struct tcpspan_event *reserve(void)
{
	/* reserve a record in the ring; a full ring is counted, never silent */
	struct tcpspan_event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);

	if (!e) {
		count(TCPSPAN_C_RINGBUF_FULL);
		return NULL;
	}
	__builtin_memset(e, 0, sizeof(*e));
	return e;
}

static __always_inline void submit(struct tcpspan_event *e)
{
	bpf_ringbuf_submit(e, 0);
	count(TCPSPAN_C_SUBMITTED);
}

static __always_inline void fill_common(struct tcpspan_event *e, __u8 kind, __u64 cookie,
					const struct tuple *t, __u32 netns)
{
	e->ts_ns = bpf_ktime_get_ns();
	e->kind = kind;
	e->cookie = cookie;
	e->netns = netns;
	e->family = t->family;
	e->lport = t->lport;
	e->rport = t->rport;
	__builtin_memcpy(e->laddr, t->laddr, 16);
	__builtin_memcpy(e->raddr, t->raddr, 16);
}

static __always_inline void fill_info(struct tcpspan_event *e, const struct sock_info *si)
{
	if (!si) {
		e->flags |= TCPSPAN_F_UNTRACKED;
		return;
	}
	e->syn_ns = si->syn_ns;
	e->rx_bytes = si->rx_bytes;
	e->rtt_sum_us = si->rtt_sum_us;
	e->rtt_count = si->rtt_count;
	e->rtt_min_us = si->rtt_min_us;
	e->rtt_max_us = si->rtt_max_us;
	e->rx_segs = si->rx_segs;
	if (si->flags & TCPSPAN_F_PID) {
		e->flags |= TCPSPAN_F_PID;
		e->pid = si->pid;
		__builtin_memcpy(e->comm, si->comm, TCPSPAN_COMM_LEN);
	}
}

static __always_inline void fill_stats(struct tcpspan_event *e, const struct sock *sk, int newstate)
{
	struct tcp_sock *tp = bpf_skc_to_tcp_sock((void *)sk);

	if (!tp)
		return;
	e->flags |= TCPSPAN_F_STATS;
	e->bytes_acked = tp->bytes_acked;
	e->bytes_received = tp->bytes_received;
	e->segs_in = tp->segs_in;
	e->segs_out = tp->segs_out;
	e->total_retrans = tp->total_retrans;
	e->srtt_us = tp->srtt_us >> 3;
	if (newstate == TCP_ESTABLISHED) {
		/* both ends see the same pair: the basis of a shared trace id */
		e->flags |= TCPSPAN_F_ISN;
		e->isn_local = tp->snd_una - 1;
		e->isn_peer = tp->rcv_nxt - 1;
	}
}

static __always_inline void take_task(struct sock_info *si, int newstate)
{
	struct task_struct *task;

	if (!si || (si->flags & TCPSPAN_F_PID) || !syscall_transition(newstate))
		return;
	si->pid = bpf_get_current_pid_tgid() >> 32;
	/*
	 * The executable's name, as process.executable.name defines it: a
	 * thread's comm can be renamed (Node calls its main thread "MainThread").
	 */
	task = bpf_get_current_task_btf();
	bpf_probe_read_kernel_str(si->comm, sizeof(si->comm), task->mm->exe_file->f_path.dentry->d_name.name);
	si->flags |= TCPSPAN_F_PID;
}

/* Keeps the tuple stable for the socket's whole life. */
static __always_inline void remember_port(struct sock_info *si, struct tuple *t)
{
	if (!si)
		return;
	if (t->lport)
		si->lport = t->lport;
	else
		t->lport = si->lport;
	if (t->rport)
		si->rport = t->rport;
	else
		t->rport = si->rport;
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

SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(handle_set_state, const struct sock *sk, const int oldstate, const int newstate)
{
	struct tcpspan_event *e;
	struct sock_info *si;
	struct tuple t = {};
	bool filtered;
	__u64 cookie;
	__u32 netns;

	if (!is_tcp_inet(sk))
		return 0;
	/* listening sockets are not connections */
	if (newstate == TCP_LISTEN || (oldstate == TCP_LISTEN && newstate == TCP_CLOSE))
		return 0;

	tuple_of(&sk->__sk_common, &t);
	netns = netns_of(&sk->__sk_common);
	cookie = bpf_get_socket_cookie((void *)sk);
	si = track(sk, &t, netns, newstate != TCP_CLOSE, &filtered);
	if (filtered)
		return 0;

	if (si && oldstate == TCP_LISTEN && newstate == TCP_SYN_RECV) {
		/* a passive open: the SYN arrived before this socket existed */
		struct syn_key k = {};
		__u64 *syn_ns;

		syn_key_of(&k, &t, sk->__sk_common.skc_net.net->net_cookie);
		syn_ns = bpf_map_lookup_elem(&syn_times, &k);
		if (syn_ns) {
			si->syn_ns = *syn_ns;
			bpf_map_delete_elem(&syn_times, &k);
		}
	}
	take_task(si, newstate);
	remember_port(si, &t);

	e = reserve();
	if (e) {
		fill_common(e, TCPSPAN_EV_STATE, cookie, &t, netns);
		e->oldstate = oldstate;
		e->state = newstate;
		fill_info(e, si);
		fill_stats(e, sk, newstate);
		if (newstate == TCP_CLOSE)
			e->error = sk->sk_err;
		submit(e);
	}
	return 0;
}

/* An event with no socket of its own (cookie 0): filter on its tuple, emit one record. */
static __always_inline void tuple_event(__u8 kind, const struct tuple *t, __u32 netns, __u8 state,
					__u8 tcp_flags)
{
	struct tcpspan_event *e;

	if (!wanted(t, netns))
		return;
	e = reserve();
	if (!e)
		return;
	fill_common(e, kind, 0, t, netns);
	e->state = state;
	e->tcp_flags = tcp_flags;
	if (kind == TCPSPAN_EV_SYNACK_RETRANSMIT)
		e->segs = 1;
	submit(e);
}

/* Events about an existing socket: look it up, apply the filters, emit one record. */
static __always_inline struct tcpspan_event *socket_event(const struct sock *sk, __u8 kind)
{
	struct tcpspan_event *e;
	struct sock_info *si;
	struct tuple t = {};
	bool filtered;
	__u64 cookie;
	__u32 netns;
	__u8 state;

	tuple_of(&sk->__sk_common, &t);
	netns = netns_of(&sk->__sk_common);
	state = sk->__sk_common.skc_state;
	cookie = bpf_get_socket_cookie((void *)sk);
	si = track(sk, &t, netns, false, &filtered);
	if (filtered)
		return NULL;
	remember_port(si, &t);

	e = reserve();
	if (!e)
		return NULL;
	fill_common(e, kind, cookie, &t, netns);
	e->state = state;
	fill_info(e, si);
	return e;
}

static __always_inline int retransmit(const struct sock *sk, const struct sk_buff *skb, int err)
{
	struct tcp_skb_cb *cb;
	struct tcpspan_event *e;

	e = socket_event(sk, TCPSPAN_EV_RETRANSMIT);
	if (!e)
		return 0;
	cb = (struct tcp_skb_cb *)&skb->cb[0];
	/* skb->cb is a char array to the verifier: read the TCP view of it with CO-RE */
	e->seq = BPF_CORE_READ(cb, seq);
	e->segs = BPF_CORE_READ(cb, tcp_gso_segs);
	e->tcp_flags = BPF_CORE_READ(cb, tcp_flags);
	e->error = err;
	fill_stats(e, sk, -1);
	submit(e);
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
	struct tuple t = {};

	tuple_of(&req->__req_common, &t);
	tuple_event(TCPSPAN_EV_SYNACK_RETRANSMIT, &t, netns_of(&sk->__sk_common), TCP_SYN_RECV,
		    0x12 /* SYN|ACK */);
	return 0;
}

SEC("tp_btf/tcp_probe")
int BPF_PROG(handle_probe, struct sock *sk, const struct sk_buff *skb)
{
	struct tcp_sock *tp;
	struct sock_info *si;
	struct tuple t = {};
	bool filtered;
		__u32 srtt, len;
	__u8 doff = 0;
	unsigned char *th;

	si = bpf_sk_storage_get(&socks, sk, NULL, 0);
	if (!si) {
		/* a connection open before tcpspan started: summarise it from now on */
		tuple_of(&sk->__sk_common, &t);
		si = track(sk, &t, netns_of(&sk->__sk_common), true, &filtered);
		if (!si)
			return 0;
	}
	tp = bpf_skc_to_tcp_sock(sk);
	if (!tp)
		return 0;

	/* tcp_probe fires before this segment's ACK is processed: srtt as of now */
	srtt = tp->srtt_us >> 3;
	if (srtt) {
		si->rtt_count++;
		si->rtt_sum_us += srtt;
		if (!si->rtt_min_us || srtt < si->rtt_min_us)
			si->rtt_min_us = srtt;
		if (srtt > si->rtt_max_us)
			si->rtt_max_us = srtt;
	}
	/* skb->data points at the TCP header on this path */
	th = skb->data;
	bpf_probe_read_kernel(&doff, 1, th + 12);
	len = skb->len;
	if (len > (__u32)(doff >> 4) * 4)
		si->rx_bytes += len - (doff >> 4) * 4;
	si->rx_segs++;
	return 0;
}

SEC("tp_btf/tcp_receive_reset")
int BPF_PROG(handle_receive_reset, struct sock *sk)
{
	struct tcpspan_event *e = socket_event(sk, TCPSPAN_EV_RESET_RECEIVED);

	if (e)
		submit(e);
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
	tuple_event(TCPSPAN_EV_RESET_SENT, &t, skb->dev->nd_net.net->ns.inum, TCP_CLOSE, 0);
	return 0;
}

SEC("tp_btf/tcp_send_reset")
int BPF_PROG(handle_send_reset, const struct sock *sk, const struct sk_buff *skb)
{
	struct tcpspan_event *e;

	if (!sk)
		return skb ? reset_without_socket(skb) : 0;
	/* sk may be a timewait socket: only sock_common fields are safe */
	e = socket_event(sk, TCPSPAN_EV_RESET_SENT);
	if (e)
		submit(e);
	return 0;
}

SEC("tp_btf/inet_sk_error_report")
int BPF_PROG(handle_error_report, const struct sock *sk)
{
	struct tcpspan_event *e;

	if (!is_tcp_inet(sk))
		return 0;
	e = socket_event(sk, TCPSPAN_EV_ERROR);
	if (!e)
		return 0;
	e->error = sk->sk_err;
	submit(e);
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
