// Per-flow counters for bench/bench_vector.py: a HASH map keyed by the IPv4 5-tuple,
// created on a flow's first packet (BPF_NOEXIST) and bumped with atomic adds after.
// Build: clang -O2 -g -target bpf -I/usr/include/x86_64-linux-gnu -c xdp_flowcount.c
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <linux/udp.h>
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
    __uint(max_entries, 262144);
    __type(key, struct flow_key);
    __type(value, struct flow_stats);
} flows SEC(".maps");

SEC("xdp")
int count_flows(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > end)
        return XDP_PASS;
    struct flow_key k = {};
    k.saddr = ip->saddr;
    k.daddr = ip->daddr;
    k.proto = ip->protocol;
    if (ip->ihl == 5 && !(ip->frag_off & bpf_htons(0x1fff)) &&
        (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)) {
        struct udphdr *l4 = (void *)(ip + 1);      /* the ports, for TCP too */
        if ((void *)(l4 + 1) <= end) {
            k.sport = l4->source;
            k.dport = l4->dest;
        }
    }
    __u64 len = end - data;
    struct flow_stats *s = bpf_map_lookup_elem(&flows, &k);
    if (!s) {
        struct flow_stats init = {1, len};
        bpf_map_update_elem(&flows, &k, &init, BPF_NOEXIST);
        return XDP_PASS;
    }
    __sync_fetch_and_add(&s->packets, 1);
    __sync_fetch_and_add(&s->bytes, len);
    return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
