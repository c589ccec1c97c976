// SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause)
/* Prints the layout of abi.h as JSON, so the TypeScript codec can be tested
 * against what the C compiler actually produces. Built and run by the tests. */
#include <stddef.h>
#include <stdio.h>
#include "include/abi.h"

#define FIELD(s, f) printf("\"%s.%s\":[%zu,%zu],", #s, #f, offsetof(struct s, f), sizeof(((struct s *)0)->f))

int main(void)
{
	printf("{\"abiVersion\":%d,", AMBIENT_ABI_VERSION);
	printf("\"sizes\":{\"ambient_pod\":%zu,\"ambient_inbound\":%zu,\"ambient_orig_dst\":%zu,\"ambient_tuple_key\":%zu},",
	       sizeof(struct ambient_pod), sizeof(struct ambient_inbound), sizeof(struct ambient_orig_dst),
	       sizeof(struct ambient_tuple_key));
	printf("\"fields\":{");
	FIELD(ambient_pod, ip4); FIELD(ambient_pod, outbound_port); FIELD(ambient_pod, flags);
	FIELD(ambient_inbound, flags);
	FIELD(ambient_orig_dst, ip4); FIELD(ambient_orig_dst, port); FIELD(ambient_orig_dst, netns_cookie);
	FIELD(ambient_tuple_key, netns_cookie); FIELD(ambient_tuple_key, src_ip4); FIELD(ambient_tuple_key, dst_ip4);
	FIELD(ambient_tuple_key, src_port); FIELD(ambient_tuple_key, dst_port);
	printf("\"end\":[0,0]},");
	printf("\"constants\":{\"maxPods\":%d,\"maxConns\":%d,\"counterMax\":%d,\"podOutbound\":%d,\"proxyMark\":%d,\"hbonePort\":%d,"
	       "\"counters\":[%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d,%d]}}\n",
	       AMBIENT_MAX_PODS, AMBIENT_MAX_CONNS, AMBIENT_CTR_MAX, AMBIENT_POD_OUTBOUND,
	       AMBIENT_DEFAULT_PROXY_MARK, AMBIENT_DEFAULT_HBONE_PORT,
	       AMBIENT_CTR_CONNECT_REDIRECTED, AMBIENT_CTR_CONNECT_SKIP_MARK, AMBIENT_CTR_CONNECT_SKIP_LOCAL,
	       AMBIENT_CTR_CONNECT_MAP_FULL, AMBIENT_CTR_SOCKOPS_TUPLE_ADDED, AMBIENT_CTR_SOCKOPS_TUPLE_REMOVED,
	       AMBIENT_CTR_SOCKOPS_TUPLE_FAILED, AMBIENT_CTR_GETPEERNAME_RESTORED, AMBIENT_CTR_SK_LOOKUP_STEERED,
	       AMBIENT_CTR_SK_LOOKUP_SKIP_PORT, AMBIENT_CTR_SK_LOOKUP_SKIP_LOCAL, AMBIENT_CTR_SK_LOOKUP_NO_LISTENER,
	       AMBIENT_CTR_SK_LOOKUP_ASSIGN_FAILED);
	return 0;
}
