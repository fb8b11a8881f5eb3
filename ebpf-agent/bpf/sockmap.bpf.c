// SPDX-License-Identifier: GPL-2.0
/*
 * Same-node TCP short-circuit: a sockops program puts every established TCP socket whose peer
 * address belongs to this node into a SOCKHASH keyed by its 4-tuple; an sk_msg program on that map
 * hands each sendmsg() straight to the peer socket's receive queue (bpf_msg_redirect_hash with
 * BPF_F_INGRESS), skipping the TCP/IP stack and `lo`.
 *
 * Ingress redirect has no flow control of its own: a peer that does not read would let the sender
 * queue without limit. So a message is redirected only while the peer's redirect queue
 * (sk_psock.msg_tot_len) stays under a byte budget; past it the message takes the normal TCP path,
 * whose window and buffers push back on the sender. Going back to redirect waits until the peer has
 * read every byte sent over TCP (its copied_seq reached our write_seq), so the stream never reorders:
 * the reader drains redirected bytes first (tcp_bpf_recvmsg), and no redirected byte can overtake a
 * TCP byte.
 *
 * Addresses are keyed as 16 bytes with IPv4 in its v4-mapped form (::ffff:a.b.c.d), so an IPv4
 * client matches a server socket accepted on a dual-stack `::` listener.
 */
#include "vmlinux.h"
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#define AF_INET 2
#define AF_INET6 10
#define SK_PASS 1
#define BPF_F_INGRESS (1ULL << 0)
#define SK_USER_DATA_PTRMASK (~7UL) /* NOCOPY | BPF | PSOCK flag bits of sk_user_data */

struct sock_key {
	__u8 local_ip[16];
	__u8 remote_ip[16];
	__u32 local_port; /* host order */
	__u32 remote_port; /* host order */
};

struct local_prefix {
	__u32 prefixlen;
	__u8 ip[16];
};

struct agw_config {
	__u32 queue_budget_bytes; /* per peer socket; 0 disables redirect */
	__u32 flags;
};
#define CONFIG_PORT_FILTER 1 /* only sockets whose local or remote port is in agw_ports */

enum counter {
	C_SOCKETS_INSERTED,
	C_SOCKETS_NOT_LOCAL,
	C_SOCKETS_PORT_FILTERED,
	C_SOCKETS_INSERT_FAILED,
	C_MESSAGES,
	C_REDIRECTS,
	C_REDIRECTED_BYTES,
	C_PASS_NO_PEER,
	C_PASS_OVER_BUDGET,
	C_PASS_TCP_BACKLOG,
	C_PASS_NO_QUEUE_INFO,
	C_PASSED_BYTES,
	C_PASS_DETACHED,
	C_COUNT,
};

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
} agw_socks SEC(".maps");

/*
 * The kernel address of each socket in agw_socks, by the same key. An sk_msg program may not hold
 * the reference that a SOCKHASH lookup returns (it has no bpf_sk_release), so it reads the peer's
 * state through this address with fault-safe probe reads; the entry goes when the socket closes.
 */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct sock_key);
	__type(value, __u64);
} agw_sock_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct local_prefix);
	__type(value, __u8);
} agw_local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);
	__type(value, __u8);
} agw_ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct agw_config);
} agw_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, C_COUNT);
	__type(key, __u32);
	__type(value, __u64);
} agw_counters SEC(".maps");

static __always_inline void count(__u32 which, __u64 n)
{
	__u64 *slot = bpf_map_lookup_elem(&agw_counters, &which);
	if (slot)
		*slot += n;
}

static __always_inline void ip4_mapped(__u8 out[16], __u32 ip4)
{
	__builtin_memset(out, 0, 10);
	out[10] = 0xff;
	out[11] = 0xff;
	__builtin_memcpy(out + 12, &ip4, 4);
}

/* The same key from either context: both sockops and sk_msg expose these fields alike. */
#define FILL_KEY(key, ctx)                                                          \
	do {                                                                        \
		if ((ctx)->family == AF_INET) {                                     \
			ip4_mapped((key)->local_ip, (ctx)->local_ip4);              \
			ip4_mapped((key)->remote_ip, (ctx)->remote_ip4);            \
		} else {                                                            \
			__u32 l0 = (ctx)->local_ip6[0], l1 = (ctx)->local_ip6[1];   \
			__u32 l2 = (ctx)->local_ip6[2], l3 = (ctx)->local_ip6[3];   \
			__u32 r0 = (ctx)->remote_ip6[0], r1 = (ctx)->remote_ip6[1]; \
			__u32 r2 = (ctx)->remote_ip6[2], r3 = (ctx)->remote_ip6[3]; \
			__builtin_memcpy((key)->local_ip, &l0, 4);                  \
			__builtin_memcpy((key)->local_ip + 4, &l1, 4);              \
			__builtin_memcpy((key)->local_ip + 8, &l2, 4);              \
			__builtin_memcpy((key)->local_ip + 12, &l3, 4);             \
			__builtin_memcpy((key)->remote_ip, &r0, 4);                 \
			__builtin_memcpy((key)->remote_ip + 4, &r1, 4);             \
			__builtin_memcpy((key)->remote_ip + 8, &r2, 4);             \
			__builtin_memcpy((key)->remote_ip + 12, &r3, 4);            \
		}                                                                   \
		(key)->local_port = (ctx)->local_port;                              \
		/* network order in the upper 16 bits of the field */               \
		(key)->remote_port = bpf_ntohl((ctx)->remote_port);                 \
	} while (0)

static __always_inline struct agw_config *current_config(void)
{
	__u32 zero = 0;
	return bpf_map_lookup_elem(&agw_config, &zero);
}

SEC("sockops")
int agw_sockops(struct bpf_sock_ops *skops)
{
	if (skops->family != AF_INET && skops->family != AF_INET6)
		return 1;
	struct sock_key key = {};
	if (skops->op == BPF_SOCK_OPS_STATE_CB) {
		if (skops->args[1] == BPF_TCP_CLOSE) {
			FILL_KEY(&key, skops);
			bpf_map_delete_elem(&agw_sock_addrs, &key);
		}
		return 1;
	}
	if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB &&
	    skops->op != BPF_SOCK_OPS_PASSIVE_ESTABLISHED_CB)
		return 1;
	FILL_KEY(&key, skops);

	struct local_prefix remote = { .prefixlen = 128 };
	__builtin_memcpy(remote.ip, key.remote_ip, 16);
	if (!bpf_map_lookup_elem(&agw_local_addrs, &remote)) {
		count(C_SOCKETS_NOT_LOCAL, 1);
		return 1;
	}
	struct agw_config *cfg = current_config();
	if (cfg && (cfg->flags & CONFIG_PORT_FILTER)) {
		if (!bpf_map_lookup_elem(&agw_ports, &key.local_port) &&
		    !bpf_map_lookup_elem(&agw_ports, &key.remote_port)) {
			count(C_SOCKETS_PORT_FILTERED, 1);
			return 1;
		}
	}
	struct bpf_sock *sk = skops->sk;
	struct tcp_sock *tp = sk ? bpf_skc_to_tcp_sock(sk) : 0;
	if (!tp) {
		count(C_SOCKETS_INSERT_FAILED, 1);
		return 1;
	}
	__u64 addr = (__u64)tp;
	if (bpf_map_update_elem(&agw_sock_addrs, &key, &addr, BPF_ANY) != 0 ||
	    bpf_sock_hash_update(skops, &agw_socks, &key, BPF_ANY) != 0) {
		bpf_map_delete_elem(&agw_sock_addrs, &key);
		count(C_SOCKETS_INSERT_FAILED, 1);
		return 1;
	}
	bpf_sock_ops_cb_flags_set(skops, BPF_SOCK_OPS_STATE_CB_FLAG);
	count(C_SOCKETS_INSERTED, 1);
	return 1;
}

/* Bytes queued on the peer's redirect (ingress_msg) queue, or -1 when this kernel does not say. */
static __always_inline long peer_redirect_queue(struct tcp_sock *peer)
{
	if (!bpf_core_field_exists(struct sk_psock, msg_tot_len))
		return -1;
	unsigned long user_data = (unsigned long)BPF_CORE_READ(peer, inet_conn.icsk_inet.sk.sk_user_data);
	struct sk_psock *psock = (struct sk_psock *)(user_data & SK_USER_DATA_PTRMASK);
	if (!psock)
		return -1;
	return BPF_CORE_READ(psock, msg_tot_len);
}

/*
 * Sockets already in the sockhash keep this program (and, through it, the map) alive after the agent
 * dies; only the map's own attachment goes with the agent's link. So once the map no longer has a
 * verdict program, those sockets stop redirecting and carry on over plain TCP.
 */
static __always_inline int agent_attached(void)
{
	struct bpf_shtab *socks = (struct bpf_shtab *)&agw_socks;
	return socks->progs.msg_parser != 0;
}

SEC("sk_msg")
int agw_sk_msg(struct sk_msg_md *msg)
{
	__u32 size = msg->size;
	count(C_MESSAGES, 1);
	if (!agent_attached()) {
		count(C_PASS_DETACHED, 1);
		goto pass;
	}

	struct sock_key peer_key = {};
	FILL_KEY(&peer_key, msg);
	/* the peer's key is ours with the ends swapped */
	__u8 tmp_ip[16];
	__builtin_memcpy(tmp_ip, peer_key.local_ip, 16);
	__builtin_memcpy(peer_key.local_ip, peer_key.remote_ip, 16);
	__builtin_memcpy(peer_key.remote_ip, tmp_ip, 16);
	__u32 tmp_port = peer_key.local_port;
	peer_key.local_port = peer_key.remote_port;
	peer_key.remote_port = tmp_port;

	struct agw_config *cfg = current_config();
	__u32 budget = cfg ? cfg->queue_budget_bytes : 0;

	__u64 *peer_addr = bpf_map_lookup_elem(&agw_sock_addrs, &peer_key);
	struct bpf_sock *own_sk = msg->sk;
	struct tcp_sock *own = own_sk ? bpf_skc_to_tcp_sock(own_sk) : 0;
	if (!peer_addr || !own) {
		count(C_PASS_NO_PEER, 1);
		goto pass;
	}
	struct tcp_sock *peer = (struct tcp_sock *)*peer_addr;
	/* bytes we sent over TCP that the peer has not read yet: redirecting now would overtake them */
	int tcp_backlog = own->write_seq != BPF_CORE_READ(peer, copied_seq);
	long queued = peer_redirect_queue(peer);

	if (tcp_backlog) {
		count(C_PASS_TCP_BACKLOG, 1);
		goto pass;
	}
	if (queued < 0) {
		count(C_PASS_NO_QUEUE_INFO, 1);
		goto pass;
	}
	if ((__u64)queued + size > budget) {
		count(C_PASS_OVER_BUDGET, 1);
		goto pass;
	}
	if (bpf_msg_redirect_hash(msg, &agw_socks, &peer_key, BPF_F_INGRESS) == SK_PASS) {
		count(C_REDIRECTS, 1);
		count(C_REDIRECTED_BYTES, size);
		return SK_PASS;
	}
	count(C_PASS_NO_PEER, 1);
pass:
	count(C_PASSED_BYTES, size);
	/* never SK_DROP: a message that is not redirected takes the normal TCP path */
	return SK_PASS;
}

char LICENSE[] SEC("license") = "GPL";
