// Map-in-map: an ARRAY_OF_MAPS whose slots 0 and 1 are initialised in the object with
// two ARRAY maps of the same definition (libbpf fills the slots at load,
// init_map_in_map_slots).  IPv4 packets pick the inner map by (ip proto & 1), IPv6
// packets take inner_odd through key 5 of a HASH_OF_MAPS, other frames slot 2 of the
// array, which is empty (lookup gives NULL).  The inner map counts packets and
// bytes per (frame length & 3); every third packet of a (map, index) cell is dropped,
// so verdicts depend on the counts.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct cell {
    __u64 packets;
    __u64 bytes;
};

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, struct cell);
};

// the inner maps first: libbpf 1.1 creates maps in this order and fills the outer
// map's slots right after creating it
struct inner_map inner_even SEC(".maps");
struct inner_map inner_odd SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 4);
    __type(key, __u32);
    __array(values, struct inner_map);
} outer SEC(".maps") = {
    .values = { [0] = &inner_even, [1] = &inner_odd },
};

// a HASH_OF_MAPS initialised the same way: the slot index is the u32 key (5 here)
struct {
    __uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
    __uint(max_entries, 8);
    __type(key, __u32);
    __array(values, struct inner_map);
} by_key SEC(".maps") = {
    .values = { [5] = &inner_odd },
};

SEC("xdp")
int map_in_map(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    __u32 slot = 2, idx = 0;

    if ((void *)(eth + 1) > data_end)
        return XDP_ABORTED;
    if (eth->h_proto == bpf_htons(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > data_end)
            return XDP_DROP;
        slot = ip->protocol & 1;
        idx = (data_end - data) & 3;
    }
    void *inner;
    if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
        // key 5 of the hash of maps: inner_odd, cell 3
        slot = 5;
        idx = 3;
        inner = bpf_map_lookup_elem(&by_key, &slot);
    } else {
        inner = bpf_map_lookup_elem(&outer, &slot);
    }
    if (!inner)
        return XDP_PASS;
    struct cell *c = bpf_map_lookup_elem(inner, &idx);
    if (!c)
        return XDP_ABORTED;
    __u64 n = __sync_fetch_and_add(&c->packets, 1);
    __sync_fetch_and_add(&c->bytes, data_end - data);
    return n % 3 == 2 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
