/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * maps.h: the datapath's maps, declared identically in every object and pinned by
 * name so that all programs (and every later loader) share one instance.
 */
#ifndef AMBIENT_MAPS_H
#define AMBIENT_MAPS_H

#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include "abi.h"

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIENT_MAX_PODS);
	__type(key, __u64);
	__type(value, struct ambient_pod);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_pods SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, AMBIENT_MAX_PODS);
	__type(key, __u32);
	__type(value, struct ambient_inbound);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_inbound SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIENT_MAX_CONNS);
	__type(key, __u64);
	__type(value, struct ambient_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_orig_by_cookie SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, AMBIENT_MAX_CONNS);
	__type(key, struct ambient_tuple_key);
	__type(value, struct ambient_orig_dst);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_orig_by_tuple SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_SOCKHASH);
	__uint(max_entries, AMBIENT_MAX_PODS);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_listeners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, AMBIENT_CTR_MAX);
	__type(key, __u32);
	__type(value, __u64);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} ambient_counters SEC(".maps");

static __always_inline void ambient_count(__u32 counter)
{
	__u64 *value = bpf_map_lookup_elem(&ambient_counters, &counter);

	if (value)
		*value += 1;
}

const volatile __u32 proxy_mark = AMBIENT_DEFAULT_PROXY_MARK;
const volatile __u16 hbone_port = AMBIENT_DEFAULT_HBONE_PORT;

#endif /* AMBIENT_MAPS_H */
