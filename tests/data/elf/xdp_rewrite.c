// Packet rewriting: IPv4 UDP packets get their MAC addresses swapped and TTL
// decremented (with the incremental checksum update of RFC 1624) and go back out
// (XDP_TX); two levels of __noinline subprograms in .text, one of them called from
// two places; a table in .rodata; a .data array; a static .bss variable (relocated
// against the section symbol with the variable's offset as addend).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/ip.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

const __u8 ttl_floor[4] = {1, 2, 3, 4};          /* .rodata, indexed */
__u32 tx_count[4] = {10, 20, 30, 40};            /* .data */
__u64 udp_seen;                                  /* .bss */
static __u64 static_hits;                        /* .bss, after udp_seen */

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 8);
    __type(key, __u32);
    __type(value, __u32);
} ttl_seen SEC(".maps");

static __noinline __u16 csum_fold(__u32 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u16)sum;
}

static __noinline void swap_macs(struct ethhdr *eth)
{
    __u8 tmp[ETH_ALEN];
    __builtin_memcpy(tmp, eth->h_source, ETH_ALEN);
    __builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
    __builtin_memcpy(eth->h_dest, tmp, ETH_ALEN);
}

static __noinline int dec_ttl(struct iphdr *ip)
{
    __u32 check = ip->check;
    check += bpf_htons(0x0100);
    ip->check = csum_fold(check);
    return --ip->ttl;
}

SEC("xdp")
int xdp_rewrite(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > data_end)
        return XDP_DROP;
    if (eth->h_proto != bpf_htons(ETH_P_IP))
        return XDP_PASS;
    struct iphdr *ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end)
        return XDP_DROP;
    __u32 bucket = bpf_ntohs(ip->id) & 7;
    __u32 *seen = bpf_map_lookup_elem(&ttl_seen, &bucket);
    if (seen)
        *seen += 1;
    if (ip->protocol != IPPROTO_UDP)
        return XDP_PASS;
    udp_seen++;
    static_hits += ip->ttl;
    if (ip->ttl <= ttl_floor[ip->tos & 3])
        return XDP_DROP;
    swap_macs(eth);
    int ttl = dec_ttl(ip);
    tx_count[ttl & 3] += 1;
    /* the checksum fold again on the header's first word, to call it twice */
    if (csum_fold(ip->check) == 0xffff)
        return XDP_ABORTED;
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
