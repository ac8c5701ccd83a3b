// A CO-RE field access (preserve_access_index): not yet relocated by bpfkit.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct xdp_md___mine {
    __u32 data;
    __u32 data_end;
} __attribute__((preserve_access_index));

SEC("xdp")
int core(struct xdp_md___mine *ctx)
{
    return ctx->data_end - ctx->data > 100 ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
