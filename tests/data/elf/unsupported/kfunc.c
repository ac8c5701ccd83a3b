// A call to a kernel function (kfunc, an extern __ksym): not supported.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern void bpf_rcu_read_lock(void) __ksym;
extern void bpf_rcu_read_unlock(void) __ksym;

SEC("xdp")
int kf(struct xdp_md *ctx)
{
    bpf_rcu_read_lock();
    bpf_rcu_read_unlock();
    return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
