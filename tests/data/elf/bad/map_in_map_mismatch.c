// A map-in-map initialiser naming a map that does not match the inner definition:
// `big` has 8 entries where struct inner_map says 4, and an inner ARRAY must agree on
// max_entries (array_map_meta_equal, no BPF_F_INNER_MAP), so the kernel refuses the
// slot update with EINVAL and libbpf's load fails.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct inner_map {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
};

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 8);
    __type(key, __u32);
    __type(value, __u64);
} big SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, __u32);
    __array(values, struct inner_map);
} outer SEC(".maps") = {
    .values = { [1] = &big },
};

SEC("xdp")
int lookup(struct xdp_md *ctx)
{
    __u32 k = 1;
    return bpf_map_lookup_elem(&outer, &k) ? XDP_PASS : XDP_DROP;
}

char LICENSE[] SEC("license") = "GPL";
