// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sockops: when a redirected client socket starts its handshake (TCP_CONNECT_CB,
 * source port already bound, SYN not yet sent), index its original destination by
 * the 4-tuple ztunnel will see on accept; remove both entries when it closes.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "include/maps.h"

#define TCP_CLOSE_STATE 7 /* BPF_TCP_CLOSE */

static __always_inline void tuple_of(struct bpf_sock_ops *skops, __u64 netns_cookie,
				     struct ambient_tuple_key *key)
{
	key->netns_cookie = netns_cookie;
	key->src_ip4 = skops->local_ip4;
	key->dst_ip4 = skops->remote_ip4;
	/* local_port is host order, remote_port network order in the upper half. */
	key->src_port = bpf_htons((__u16)skops->local_port);
	key->dst_port = (__u16)(skops->remote_port >> 16);
	key->reserved = 0;
}

SEC("sockops")
int ambient_sockops(struct bpf_sock_ops *skops)
{
	struct ambient_tuple_key key = {};
	struct ambient_orig_dst *orig;
	__u64 cookie;

	if (skops->family != 2 /* AF_INET */)
		return 1;
	switch (skops->op) {
	case BPF_SOCK_OPS_TCP_CONNECT_CB:
		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&ambient_orig_by_cookie, &cookie);
		if (!orig)
			return 1;
		tuple_of(skops, orig->netns_cookie, &key);
		if (bpf_map_update_elem(&ambient_orig_by_tuple, &key, orig, BPF_ANY)) {
			ambient_count(AMBIENT_CTR_SOCKOPS_TUPLE_FAILED);
			return 1;
		}
		bpf_sock_ops_cb_flags_set(skops, skops->bpf_sock_ops_cb_flags |
						 BPF_SOCK_OPS_STATE_CB_FLAG);
		ambient_count(AMBIENT_CTR_SOCKOPS_TUPLE_ADDED);
		break;
	case BPF_SOCK_OPS_STATE_CB:
		if (skops->args[1] != TCP_CLOSE_STATE)
			return 1;
		cookie = bpf_get_socket_cookie(skops);
		orig = bpf_map_lookup_elem(&ambient_orig_by_cookie, &cookie);
		if (!orig)
			return 1;
		tuple_of(skops, orig->netns_cookie, &key);
		bpf_map_delete_elem(&ambient_orig_by_tuple, &key);
		bpf_map_delete_elem(&ambient_orig_by_cookie, &cookie);
		ambient_count(AMBIENT_CTR_SOCKOPS_TUPLE_REMOVED);
		break;
	}
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
