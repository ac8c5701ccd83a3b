// XDP parser with bounds checks, per-flow counters in a HASH map and per-protocol
// counters in a PERCPU_ARRAY, configuration in .rodata, a __noinline subprogram in
// .text, a .data counter and a .bss scratch value.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/in.h>
#include <linux/udp.h>
#include <linux/tcp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct flow_key {
    __u32 saddr;
    __u32 daddr;
    __u16 sport;
    __u16 dport;
    __u8 proto;
    __u8 pad[3];
};

struct flow_stats {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, struct flow_key);
    __type(value, struct flow_stats);
} flows SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
    __uint(max_entries, 256);
    __type(key, __u32);
    __type(value, __u64);
} proto_count SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_LRU_HASH);
    __uint(max_entries, 64);
    __uint(key_size, 4);
    __uint(value_size, 8);
} last_len SEC(".maps");

const volatile __u16 blocked_port = 0;     /* set before a run; 0 = none */
const volatile __u32 max_len = 1500;
__u64 seen = 0;                            /* .bss */
__u32 pass_verdict = XDP_PASS;             /* .data */
__u32 last_proto;                          /* .bss too */

static __noinline int parse_ports(void *l4, void *data_end, struct flow_key *k)
{
    struct udphdr *u = l4;                 /* tcp and udp ports sit at the same place */
    if ((void *)(u + 1) > data_end)
        return -1;
    k->sport = bpf_ntohs(u->source);
    k->dport = bpf_ntohs(u->dest);
    return 0;
}

SEC("xdp")
int xdp_flows(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    struct flow_key k = {};
    __u32 len = data_end - data;

    __sync_fetch_and_add(&seen, 1);
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    if (len > max_len)
        return XDP_ABORTED;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    if (ip->ihl < 5)
        return XDP_DROP;
    k.saddr = ip->saddr;
    k.daddr = ip->daddr;
    k.proto = ip->protocol;
    last_proto = ip->protocol;
    __u32 p = ip->protocol;
    __u64 *pc = bpf_map_lookup_elem(&proto_count, &p);
    if (pc)
        __sync_fetch_and_add(pc, 1);
    if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP) {
        if (parse_ports((void *)ip + ip->ihl * 4, data_end, &k) < 0)
            return XDP_DROP;
        if (blocked_port && (k.dport == blocked_port || k.sport == blocked_port))
            return XDP_DROP;
    }
    struct flow_stats *st = bpf_map_lookup_elem(&flows, &k);
    if (st) {
        __sync_fetch_and_add(&st->packets, 1);
        __sync_fetch_and_add(&st->bytes, len);
    } else {
        struct flow_stats init = {1, len};
        bpf_map_update_elem(&flows, &k, &init, BPF_ANY);
    }
    __u64 l = len;
    bpf_map_update_elem(&last_len, &k.saddr, &l, BPF_ANY);
    return pass_verdict;
}

char LICENSE[] SEC("license") = "GPL";
