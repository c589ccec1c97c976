// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* A test-only object for the tests in native/ (compiled by native/testdata/fixtures.ts):
 * one map of each kind the addon must handle, a load-time global, and programs of
 * the attach types it supports. Counters in probe_percpu show that a program ran:
 * slot 0 gets probe_setting per connect4 call, slot 1 one per sk_lookup call. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} probe_hash SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u64);
} probe_percpu SEC(".maps");

/* Value = the socket's fd as a u32 on update (not readable back: a sockmap only
 * returns cookies for 8-byte values). */
struct {
	__uint(type, BPF_MAP_TYPE_SOCKMAP);
	__uint(max_entries, 4);
	__type(key, __u32);
	__type(value, __u32);
} probe_sockmap SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} probe_pinned SEC(".maps");

const volatile __u32 probe_setting = 7;

static __always_inline void count(__u32 slot, __u64 amount)
{
	__u64 *counter = bpf_map_lookup_elem(&probe_percpu, &slot);

	if (counter)
		*counter += amount;
}

SEC("cgroup/connect4")
int probe_connect4(struct bpf_sock_addr *ctx)
{
	count(0, probe_setting);
	return 1;
}

SEC("sk_lookup")
int probe_sk_lookup(struct bpf_sk_lookup *ctx)
{
	count(1, 1);
	return SK_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
