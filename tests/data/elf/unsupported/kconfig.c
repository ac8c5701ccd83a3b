// An extern __kconfig variable (not yet supported).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern int LINUX_KERNEL_VERSION __kconfig;

SEC("xdp")
int kver(struct xdp_md *ctx)
{
    return LINUX_KERNEL_VERSION > 0 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
