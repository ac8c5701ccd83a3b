// Tail calls through a PROG_ARRAY initialised in the object (libbpf >= 0.8 fills the
// slots at load): slot 1 drops, slot 2 counts and passes, slots 0 and 3 are empty so
// bpf_tail_call falls through.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} hits SEC(".maps");

static __always_inline void hit(__u32 k)
{
    __u64 *v = bpf_map_lookup_elem(&hits, &k);
    if (v)
        *v += 1;
}

SEC("xdp")
int tail_drop(struct xdp_md *ctx)
{
    hit(1);
    return XDP_DROP;
}

SEC("xdp")
int tail_count(struct xdp_md *ctx)
{
    hit(2);
    return XDP_PASS;
}

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 4);
    __uint(key_size, sizeof(__u32));
    __array(values, int (void *));
} jmp SEC(".maps") = {
    .values = { [1] = (void *)&tail_drop, [2] = (void *)&tail_count },
};

SEC("xdp")
int entry(struct xdp_md *ctx)
{
    __u32 idx = (ctx->data_end - ctx->data) & 3;
    bpf_tail_call(ctx, &jmp, idx);
    hit(0);
    return XDP_TX;
}

char LICENSE[] SEC("license") = "GPL";
