// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/*
 * cgroup/getpeername4: a redirected socket reports its original destination as
 * its peer, so the application never sees ztunnel's address.
 */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "include/maps.h"

SEC("cgroup/getpeername4")
int ambient_getpeername4(struct bpf_sock_addr *ctx)
{
	struct ambient_orig_dst *orig;
	__u64 cookie = bpf_get_socket_cookie(ctx);

	orig = bpf_map_lookup_elem(&ambient_orig_by_cookie, &cookie);
	if (!orig)
		return 1;
	ctx->user_ip4 = orig->ip4;
	ctx->user_port = orig->port;
	ambient_count(AMBIENT_CTR_GETPEERNAME_RESTORED);
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
