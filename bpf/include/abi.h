/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * abi.h: every struct and constant shared between the BPF programs and user space.
 *
 * The TypeScript codec (datapath/abi.ts) encodes the same layouts and is
 * tested against the sizes and offsets printed by bpf/abi-layout.c. Changing any
 * layout here means bumping AMBIENT_ABI_VERSION, which moves the pins to a new
 * directory (/sys/fs/bpf/ambient/v<N>/) so an old datapath is never misread.
 *
 * Byte order: IPv4 addresses and the ports inside ambient_orig_dst and
 * ambient_tuple_key are in network order, exactly as the kernel hands them to the
 * programs; ambient_pod.outbound_port is in host order.
 */
#ifndef AMBIENT_ABI_H
#define AMBIENT_ABI_H

#include <linux/types.h>

#define AMBIENT_ABI_VERSION 1

/* Map sizes. */
#define AMBIENT_MAX_PODS 4096
#define AMBIENT_MAX_CONNS 65536

/* ambient_pods: key __u64 netns cookie of an enrolled pod. */
struct ambient_pod {
	__u32 ip4;           /* pod IPv4, network order */
	__u16 outbound_port; /* ztunnel's outbound listener in the pod, host order */
	__u16 flags;         /* AMBIENT_POD_* */
};
_Static_assert(sizeof(struct ambient_pod) == 8, "ambient_pod size");

#define AMBIENT_POD_OUTBOUND (1 << 0) /* capture the pod's outgoing TCP connects */

/* ambient_inbound: key __u32 pod IPv4 (network order) of an enrolled pod whose
 * incoming TCP connections are steered to ztunnel's listener. */
struct ambient_inbound {
	__u32 flags; /* reserved, 0 */
};
_Static_assert(sizeof(struct ambient_inbound) == 4, "ambient_inbound size");

/* ambient_orig_by_cookie: key __u64 socket cookie of a redirected client socket. */
struct ambient_orig_dst {
	__u32 ip4;          /* original destination, network order */
	__u16 port;         /* network order */
	__u16 reserved;
	__u64 netns_cookie; /* netns of the client */
};
_Static_assert(sizeof(struct ambient_orig_dst) == 16, "ambient_orig_dst size");

/* ambient_orig_by_tuple: the key ztunnel builds from an accepted socket:
 * (netns cookie, client ip:port, redirected ip:port). */
struct ambient_tuple_key {
	__u64 netns_cookie;
	__u32 src_ip4;  /* network order */
	__u32 dst_ip4;  /* network order */
	__u16 src_port; /* network order */
	__u16 dst_port; /* network order */
	__u32 reserved;
};
_Static_assert(sizeof(struct ambient_tuple_key) == 24, "ambient_tuple_key size");

/* ambient_orig_by_tuple value: struct ambient_orig_dst. */

/* ambient_listeners: SOCKHASH, key __u32 pod IPv4 (network order), value the
 * listening socket that sk_lookup assigns inbound connections to. */

/* ambient_counters: PERCPU_ARRAY of __u64 indexed by enum ambient_counter. */
enum ambient_counter {
	AMBIENT_CTR_CONNECT_REDIRECTED = 0,
	AMBIENT_CTR_CONNECT_SKIP_MARK = 1,      /* ztunnel's own socket */
	AMBIENT_CTR_CONNECT_SKIP_LOCAL = 2,     /* loopback or the pod itself */
	AMBIENT_CTR_CONNECT_MAP_FULL = 3,       /* could not record the original destination */
	AMBIENT_CTR_SOCKOPS_TUPLE_ADDED = 4,
	AMBIENT_CTR_SOCKOPS_TUPLE_REMOVED = 5,
	AMBIENT_CTR_SOCKOPS_TUPLE_FAILED = 6,
	AMBIENT_CTR_GETPEERNAME_RESTORED = 7,
	AMBIENT_CTR_SK_LOOKUP_STEERED = 8,
	AMBIENT_CTR_SK_LOOKUP_SKIP_PORT = 9,    /* HBONE port: its own listener */
	AMBIENT_CTR_SK_LOOKUP_SKIP_LOCAL = 10,  /* from the pod itself or from lo (delivery) */
	AMBIENT_CTR_SK_LOOKUP_NO_LISTENER = 11, /* ztunnel down: dropped, fail closed */
	AMBIENT_CTR_SK_LOOKUP_ASSIGN_FAILED = 12,
	AMBIENT_CTR_MAX = 16,
};

/* Load-time settings (const volatile globals in every program), for reference:
 *   __u32 proxy_mark  SO_MARK of ztunnel's own sockets, never redirected
 *   __u16 hbone_port  inbound port left to ztunnel's own HBONE listener
 */
#define AMBIENT_DEFAULT_PROXY_MARK 0x539
#define AMBIENT_DEFAULT_HBONE_PORT 15008

#endif /* AMBIENT_ABI_H */
