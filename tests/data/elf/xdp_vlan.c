// bpf_xdp_adjust_head encapsulation and decapsulation: IPv4 TCP frames get an
// 802.1Q tag pushed (VLAN id from .rodata), 802.1Q-tagged frames get it popped, and
// UDP frames get 8 bytes of metadata-like padding cut from the front and restored.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define ETH_P_8021Q_ 0x8100

struct vlan_hdr_ {
    __be16 tci;
    __be16 proto;
};

const volatile __u16 vlan_id = 42;

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} actions SEC(".maps");

static __always_inline void count(__u32 what)
{
    __u64 *v = bpf_map_lookup_elem(&actions, &what);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("xdp")
int xdp_vlan(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    if (eth->h_proto == bpf_htons(ETH_P_8021Q_)) {
        /* pop: move the MAC addresses 4 bytes up, then drop the front */
        struct ethhdr copy;
        if (data + sizeof(*eth) + sizeof(struct vlan_hdr_) > data_end)
            return XDP_DROP;
        struct vlan_hdr_ *vh = data + sizeof(*eth);
        __builtin_memcpy(&copy, eth, 12);
        copy.h_proto = vh->proto;
        if (bpf_xdp_adjust_head(ctx, 4))
            return XDP_ABORTED;
        data = (void *)(long)ctx->data;
        data_end = (void *)(long)ctx->data_end;
        if (data + sizeof(copy) > data_end)
            return XDP_DROP;
        __builtin_memcpy(data, &copy, sizeof(copy));
        count(0);
        return XDP_PASS;
    }
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    if (ip->protocol == IPPROTO_TCP) {
        struct ethhdr copy;
        __builtin_memcpy(&copy, eth, sizeof(copy));
        if (bpf_xdp_adjust_head(ctx, -4))
            return XDP_ABORTED;
        data = (void *)(long)ctx->data;
        data_end = (void *)(long)ctx->data_end;
        if (data + sizeof(copy) + sizeof(struct vlan_hdr_) > data_end)
            return XDP_DROP;
        struct ethhdr *neth = data;
        struct vlan_hdr_ *vh = data + sizeof(*neth);
        __builtin_memcpy(neth, &copy, 12);
        neth->h_proto = bpf_htons(ETH_P_8021Q_);
        vh->tci = bpf_htons(vlan_id);
        vh->proto = copy.h_proto;
        count(1);
        return XDP_TX;
    }
    if (ip->protocol == IPPROTO_UDP) {
        /* grow by 8 at the front (uninitialised headroom is not read), shrink back */
        if (bpf_xdp_adjust_head(ctx, -8))
            return XDP_ABORTED;
        if (bpf_xdp_adjust_head(ctx, 8))
            return XDP_ABORTED;
        count(2);
        return XDP_PASS;
    }
    count(3);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
