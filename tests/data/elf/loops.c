// A bounded loop (a real back-edge in clang 14 code) and bpf_loop with a callback
// in .text (lddw of a subprogram address, BPF_PSEUDO_FUNC).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct loop_state {
    __u64 acc;
    __u32 steps;
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} sums SEC(".maps");

static int step(__u32 i, void *ctx)
{
    struct loop_state *st = ctx;
    st->acc = st->acc * 31 + i;
    st->steps++;
    return st->acc % 7 == 3;          /* 1 stops the loop early */
}

SEC("xdp")
int loops(struct xdp_md *ctx)
{
    unsigned char *data = (void *)(long)ctx->data;
    unsigned char *data_end = (void *)(long)ctx->data_end;
    struct loop_state st = {};
    __u64 sum = 0;

    #pragma clang loop unroll(disable)
    for (int i = 0; i < 24; i++) {
        if (data + i + 1 > data_end)
            break;
        sum += data[i] * (i + 1);
    }
    st.acc = sum;
    long n = bpf_loop((sum & 15) + 1, step, &st, 0);
    __u32 k = st.steps & 15;
    __u64 *v = bpf_map_lookup_elem(&sums, &k);
    if (v)
        *v += st.acc + n;
    return (st.acc & 1) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
