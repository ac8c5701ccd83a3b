// Ring buffer output: IPv4 frames reserve a record (submitted, or discarded for
// ICMP), other frames use bpf_ringbuf_output; nobody consumes, so the 4 KiB ring fills
// and later reservations fail -- counted in a map, and visible in the verdicts.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct event {
    __u32 len;
    __u32 saddr;
    __u8 proto;
    __u8 pad[3];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 4096);
} events SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} stats SEC(".maps");

static __always_inline void bump(__u32 k)
{
    __u64 *v = bpf_map_lookup_elem(&stats, &k);
    if (v)
        *v += 1;
}

SEC("xdp")
int rb(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    if (eth->h_proto != bpf_htons(ETH_P_IP)) {
        __u64 len = data_end - data;
        if (bpf_ringbuf_output(&events, &len, sizeof(len), 0)) {
            bump(2);
            return XDP_DROP;
        }
        return XDP_PASS;
    }
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        bump(0);
        return XDP_ABORTED;
    }
    e->len = data_end - data;
    e->saddr = ip->saddr;
    e->proto = ip->protocol;
    if (ip->protocol == IPPROTO_ICMP) {
        bpf_ringbuf_discard(e, 0);
        bump(1);
        return XDP_TX;
    }
    bpf_ringbuf_submit(e, 0);
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
