/* Source for tests/test_ebpf_clang.py: compiled at test time with
 *   clang -O2 -g -target bpf -mcpu={v1,v2,v3} -I/usr/include/x86_64-linux-gnu -c
 * and disassembled by both llvm-objdump and bpfkit.  It only needs to exercise many
 * instruction forms (packet loads, maps, atomics, local calls, loops, 32-bit ALU). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <linux/if_ether.h>
#include <linux/ip.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 4);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

static __attribute__((noinline)) int mix(int a, int b)
{
    return a * b + (a >> 3) - ((unsigned)b % 7u) + (int)((unsigned)a / 3u);
}

static __attribute__((noinline)) __u64 fold(__u64 x, __u32 y)
{
    __u32 lo = (__u32)x ^ y;
    lo = (lo << 5) | (lo >> 27);
    return (x >> 17) ^ lo ^ __builtin_bswap64(x) ^ __builtin_bswap32(y);
}

SEC("xdp")
int prog(struct xdp_md *ctx)
{
    void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
    struct ethhdr *eth = data;
    if ((void *)(eth + 1) > end)
        return XDP_DROP;
    __u32 key = eth->h_proto == __builtin_bswap16(ETH_P_IP);
    __u64 *v = bpf_map_lookup_elem(&counts, &key);
    if (v) {
        __sync_fetch_and_add(v, 1);
        __u64 old = __sync_fetch_and_add(v, 2);
        key += old;
#ifdef WITH_V3_ATOMICS  /* -DWITH_V3_ATOMICS with -mcpu=v3: clang 14 has no __BPF_CPU_VERSION__ */
        __sync_fetch_and_or(v, 4);
        __sync_fetch_and_and(v, ~8ULL);
        __sync_fetch_and_xor(v, 16);
        key += __sync_fetch_and_xor(v, 32);
        key += __sync_lock_test_and_set(v, 5);
        key += __sync_val_compare_and_swap(v, 5, 6);
#endif
    }
    if (eth->h_proto == __builtin_bswap16(ETH_P_IP)) {
        struct iphdr *ip = (void *)(eth + 1);
        if ((void *)(ip + 1) > end)
            return XDP_ABORTED;
        if (ip->ttl < 3)
            return XDP_DROP;
        __u32 sum = 0;
        for (int i = 0; i < 8; i++)
            sum += ((__u8 *)ip)[i] * (i + 1);
        if ((int)sum < -5 || (long)fold(ip->saddr, ip->daddr) > 1000)
            return XDP_TX;
        return mix(ip->ttl, ip->protocol) & 1 ? XDP_PASS : XDP_TX;
    }
    return key > 1 ? XDP_PASS : XDP_DROP;
}

char _license[] SEC("license") = "GPL";
