// iproute2's legacy map definition, struct bpf_elf_map (include/bpf_elf.h): 36 bytes
// with id and pinning (ignored by bpfkit) after the five fields of bpf_map_def.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_elf_map {
    __u32 type;
    __u32 size_key;
    __u32 size_value;
    __u32 max_elem;
    __u32 flags;
    __u32 id;
    __u32 pinning;
    __u32 inner_id;
    __u32 inner_idx;
};

#define PIN_GLOBAL_NS 2

struct bpf_elf_map SEC("maps") proto_hits = {
    .type = BPF_MAP_TYPE_PERCPU_HASH,
    .size_key = sizeof(__u16),
    .size_value = sizeof(__u64),
    .max_elem = 64,
    .id = 7,
    .pinning = PIN_GLOBAL_NS,
};

SEC("xdp")
int count_proto(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data;
    void *data_end = (void *)(long)ctx->data_end;
    unsigned char *p = data;
    if (data + 14 > data_end)
        return XDP_DROP;
    __u16 proto = p[12] << 8 | p[13];
    __u64 one = 1, *v = bpf_map_lookup_elem(&proto_hits, &proto);
    if (v)
        *v += 1;
    else
        bpf_map_update_elem(&proto_hits, &proto, &one, BPF_NOEXIST);
    return XDP_PASS;
}

char _license[] SEC("license") = "GPL";
