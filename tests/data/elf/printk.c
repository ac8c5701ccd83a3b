// bpf_printk: the format strings land in the mergeable .rodata.str1.1 section, reached
// through a relocation against the section symbol with the string's offset as addend.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} calls SEC(".maps");

SEC("socket")
int printk(struct __sk_buff *skb)
{
    __u32 k = 0;
    __u64 *c = bpf_map_lookup_elem(&calls, &k);
    long n = 0;
    if (skb->len > 1000)
        n = bpf_printk("big packet: %u bytes", skb->len);
    else if (skb->len < 60)
        n = bpf_printk("small packet: %u", skb->len);
    if (c)
        *c += n;
    return skb->len & 0xff;
}

char _license[] SEC("license") = "GPL";
