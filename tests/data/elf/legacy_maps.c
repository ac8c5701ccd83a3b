// Legacy SEC("maps") definitions (libbpf >= 1.0 headers no longer define struct
// bpf_map_def, so it is spelled out here) and two programs in two sections.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
    unsigned int type;
    unsigned int key_size;
    unsigned int value_size;
    unsigned int max_entries;
    unsigned int map_flags;
};

struct bpf_map_def SEC("maps") byte_count = {
    .type = BPF_MAP_TYPE_ARRAY,
    .key_size = sizeof(__u32),
    .value_size = sizeof(__u64),
    .max_entries = 4,
};

struct bpf_map_def SEC("maps") len_hist = {
    .type = BPF_MAP_TYPE_HASH,
    .key_size = sizeof(__u32),
    .value_size = sizeof(__u64),
    .max_entries = 128,
};

SEC("xdp")
int count_bytes(struct xdp_md *ctx)
{
    __u32 k = ctx->data_end - ctx->data;
    __u32 slot = k & 3;
    __u64 *v = bpf_map_lookup_elem(&byte_count, &slot);
    if (v)
        *v += k;
    __u32 bucket = k / 64;
    __u64 one = 1, *h = bpf_map_lookup_elem(&len_hist, &bucket);
    if (h)
        __sync_fetch_and_add(h, 1);
    else
        bpf_map_update_elem(&len_hist, &bucket, &one, BPF_NOEXIST);
    return (k & 1) ? XDP_DROP : XDP_PASS;
}

SEC("xdp")
int drop_small(struct xdp_md *ctx)
{
    return ctx->data_end - ctx->data < 100 ? XDP_DROP : XDP_PASS;
}

char _license[] SEC("license") = "GPL";
