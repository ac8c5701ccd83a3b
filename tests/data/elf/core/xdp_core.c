// CO-RE: an XDP parser on the kernel's own types from vmlinux.h (every struct there is
// preserve_access_index, so each header field access is a CO-RE field relocation),
// plus a local view of struct xdp_md with its members in another order: the
// relocations move its offsets to the kernel's layout.  Built against
// `bpftool btf dump file /sys/kernel/btf/vmlinux format c` (generated at test time).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct xdp_md___swapped {
    __u32 data_end;
    __u32 data;
} __attribute__((preserve_access_index));

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 128);
    __type(key, __u32);
    __type(value, __u64);
} bytes_by_src SEC(".maps");

SEC("xdp")
int xdp_core(struct xdp_md___swapped *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    if (eth->h_proto != bpf_htons(0x0800))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    __u32 src = ip->saddr;
    __u64 len = bpf_ntohs(ip->tot_len);
    __u64 *v = bpf_map_lookup_elem(&bytes_by_src, &src);
    if (v)
        __sync_fetch_and_add(v, len);
    else
        bpf_map_update_elem(&bytes_by_src, &src, &len, BPF_ANY);
    if (ip->protocol == 17) {
        struct udphdr *udp = (void *)(ip + 1);     /* ihl is a bitfield: not relocated */
        if ((void *)(udp + 1) > data_end)
            return XDP_DROP;
        return bpf_ntohs(udp->dest) == 53 ? XDP_TX : XDP_PASS;
    }
    return ip->ttl < 64 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
