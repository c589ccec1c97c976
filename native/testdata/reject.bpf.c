// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A test-only object the verifier must reject: it uses a map lookup result
 * without checking it for NULL. native/errors.test.ts expects the verifier's
 * complaint in the error message of load(). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} reject_hash SEC(".maps");

SEC("cgroup/connect4")
int reject_connect4(struct bpf_sock_addr *ctx)
{
	__u32 key = 0;
	__u64 *value = bpf_map_lookup_elem(&reject_hash, &key);

	*value += 1;
	return 1;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
