// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * sk_lookup, attached to each enrolled pod's network namespace: every incoming TCP
 * connection to the pod's IP is handed to ztunnel's inbound listener (held in
 * ambient_listeners) before any socket of the application can take it.
 *
 * Left to the normal lookup: the HBONE port (ztunnel's own listener in the pod),
 * connections from the pod to itself, and anything arriving on lo, which is how
 * ztunnel's delivery sockets (bound to lo) reach the application.
 * With no listener registered (ztunnel down) the SYN is dropped: enrolled pods fail
 * closed and never bypass the proxy.
 */
#include <linux/bpf.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include "include/maps.h"

#define LOOPBACK_IFINDEX 1

SEC("sk_lookup")
int ambient_sk_lookup(struct bpf_sk_lookup *ctx)
{
	struct bpf_sock *listener;
	__u32 pod_ip4;
	long err;

	if (ctx->family != 2 /* AF_INET */ || ctx->protocol != IPPROTO_TCP)
		return SK_PASS;
	pod_ip4 = ctx->local_ip4;
	if (!bpf_map_lookup_elem(&ambient_inbound, &pod_ip4))
		return SK_PASS;
	if (ctx->local_port == hbone_port) {
		ambient_count(AMBIENT_CTR_SK_LOOKUP_SKIP_PORT);
		return SK_PASS;
	}
	if (ctx->remote_ip4 == pod_ip4 || ctx->ingress_ifindex == LOOPBACK_IFINDEX) {
		ambient_count(AMBIENT_CTR_SK_LOOKUP_SKIP_LOCAL);
		return SK_PASS;
	}
	listener = bpf_map_lookup_elem(&ambient_listeners, &pod_ip4);
	if (!listener) {
		ambient_count(AMBIENT_CTR_SK_LOOKUP_NO_LISTENER);
		return SK_DROP;
	}
	err = bpf_sk_assign(ctx, listener, 0);
	bpf_sk_release(listener);
	if (err) {
		ambient_count(AMBIENT_CTR_SK_LOOKUP_ASSIGN_FAILED);
		return SK_DROP;
	}
	ambient_count(AMBIENT_CTR_SK_LOOKUP_STEERED);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
