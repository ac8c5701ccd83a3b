// A pointer in global data (a relocation in .data): refused.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

int target = 5;
int *ptr = &target;

SEC("xdp")
int deref(struct xdp_md *ctx)
{
    return ptr == 0 ? XDP_DROP : XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
