// A socket filter: keeps IPv4 UDP packets (truncated to 64 bytes), drops the rest,
// counting the kept ones in an ARRAY map.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <bpf/bpf_helpers.h>

/* LD_ABS byte load, the way samples/bpf spells it */
unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} kept SEC(".maps");

SEC("socket")
int udp_only(struct __sk_buff *skb)
{
    __u32 i = 0;
    if (skb->protocol != __builtin_bswap16(ETH_P_IP))
        return 0;
    __u8 proto = load_byte(skb, 9);
    if (proto != IPPROTO_UDP) {
        i = 1;
        __u64 *c = bpf_map_lookup_elem(&kept, &i);
        if (c)
            __sync_fetch_and_add(c, 1);
        return 0;
    }
    __u64 *c = bpf_map_lookup_elem(&kept, &i);
    if (c)
        __sync_fetch_and_add(c, skb->len);
    return 64;
}

char _license[] SEC("license") = "Dual BSD/GPL";
