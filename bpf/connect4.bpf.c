// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/connect4: send an enrolled pod's outgoing TCP connect to ztunnel's
 * outbound listener inside the same pod (pod IP, outbound_port), and remember the
 * original destination by socket cookie (sockops then indexes it by 4-tuple,
 * getpeername4 restores it for the application).
 *
 * Attached to the cgroup that holds the node's pods. A cgroup hook fires whatever
 * network namespace the socket is in, so only sockets whose netns cookie is in
 * ambient_pods are touched: a process of a pod's cgroup in another netns is never
 * redirected.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#define SOCK_STREAM 1 /* <sys/socket.h> is not for -target bpf */
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "include/maps.h"

static __always_inline int is_loopback(__u32 ip4)
{
	return (bpf_ntohl(ip4) >> 24) == 127;
}

SEC("cgroup/connect4")
int ambient_connect4(struct bpf_sock_addr *ctx)
{
	struct ambient_orig_dst orig = {};
	struct ambient_pod *pod;
	struct bpf_sock *sk;
	__u64 netns_cookie, cookie;
	__u32 dst_ip4;

	if (ctx->type != SOCK_STREAM || ctx->protocol != IPPROTO_TCP)
		return 1;
	netns_cookie = bpf_get_netns_cookie(ctx);
	pod = bpf_map_lookup_elem(&ambient_pods, &netns_cookie);
	if (!pod || !(pod->flags & AMBIENT_POD_OUTBOUND))
		return 1;
	sk = ctx->sk;
	if (sk && sk->mark == proxy_mark) {
		ambient_count(AMBIENT_CTR_CONNECT_SKIP_MARK);
		return 1;
	}
	dst_ip4 = ctx->user_ip4;
	if (dst_ip4 == 0 || dst_ip4 == pod->ip4 || is_loopback(dst_ip4)) {
		ambient_count(AMBIENT_CTR_CONNECT_SKIP_LOCAL);
		return 1;
	}
	orig.ip4 = dst_ip4;
	orig.port = (__u16)ctx->user_port;
	orig.netns_cookie = netns_cookie;
	cookie = bpf_get_socket_cookie(ctx);
	if (bpf_map_update_elem(&ambient_orig_by_cookie, &cookie, &orig, BPF_ANY)) {
		/* Fail closed: a connect we cannot account for goes to ztunnel anyway,
		 * which refuses it for lack of an original destination. */
		ambient_count(AMBIENT_CTR_CONNECT_MAP_FULL);
	}
	ctx->user_ip4 = pod->ip4;
	ctx->user_port = bpf_htons(pod->outbound_port);
	ambient_count(AMBIENT_CTR_CONNECT_REDIRECTED);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
