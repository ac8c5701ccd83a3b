// A tc program (a type bpfkit does not run) and one in a section libbpf has no type
// for: both load; choosing needs an explicit type.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("tc")
int classify(struct __sk_buff *skb)
{
    return skb->len > 100;
}

SEC("mysection")
int custom(struct xdp_md *ctx)
{
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
