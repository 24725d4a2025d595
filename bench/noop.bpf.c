// A connect4 program that allows everything: the kernel-side floor of any
// cgroup connect hook, measured beside Sluice's in agent_bench.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("cgroup/connect4") int noop4(struct bpf_sock_addr *ctx) { return 1; }
char LICENSE[] SEC("license") = "GPL";
