// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* sluice.bpf.c — kernel side of tenant egress enforcement.
 *
 * Attached once to <subtree>/tenants, so it judges every socket whose cgroup
 * lies in that subtree. A socket's rights are those of the cgroup it was
 * created in (sock_create records them in socket storage), so a socket
 * passed to a process outside the tenant over SCM_RIGHTS carries exactly
 * its tenant's rights.
 *
 * Order of judgement for a destination: the socket's ruleset (none: deny),
 * then pins of resolved names (never always-denied: the agent refuses to
 * pin those), then always-denied ranges, then static blocks. Everything not allowed is denied with EPERM (return 0), and a
 * deny event goes to the ring buffer.
 */
#include <linux/bpf.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

#include "sluice_abi.h"

/* From <sys/socket.h> and <netinet/in.h>, which BPF C cannot include. */
#define SL_AF_INET 2
#define SL_AF_INET6 10
#define SL_SOCK_STREAM 1
#define SL_SOCK_DGRAM 2
#define SL_IPPROTO_TCP 6
#define SL_IPPROTO_UDP 17
#define SL_IPPROTO_MPTCP 262

#define SL_DENY 0
#define SL_ALLOW 1

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SL_MAX_CGROUPS);
  __type(key, __u64);
  __type(value, struct sl_cgroup_val);
} sl_cgroups SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct sl_sock_val);
} sl_socks SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SL_MAX_PINS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_pin4_key);
  __type(value, struct sl_pin_val);
} sl_pins4 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, SL_MAX_PINS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_pin6_key);
  __type(value, struct sl_pin_val);
} sl_pins6 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SL_MAX_BLOCKS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_block4_key);
  __type(value, __u32);
} sl_blocks4 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SL_MAX_BLOCKS);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_block6_key);
  __type(value, __u32);
} sl_blocks6 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SL_MAX_DENY);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_deny4_key);
  __type(value, __u32);
} sl_deny4 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_LPM_TRIE);
  __uint(max_entries, SL_MAX_DENY);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, struct sl_deny6_key);
  __type(value, __u32);
} sl_deny6 SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, SL_EVENTS_BYTES);
} sl_events SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, SL_CNT_MAX);
  __type(key, __u32);
  __type(value, __u64);
} sl_counters SEC(".maps");

static __always_inline void count(__u32 which) {
  __u64 *c = bpf_map_lookup_elem(&sl_counters, &which);
  if (c) *c += 1;
}

static __always_inline __u32 ruleset_of_cgroup(__u64 cgroup_id) {
  struct sl_cgroup_val *v = bpf_map_lookup_elem(&sl_cgroups, &cgroup_id);
  return v ? v->ruleset : SL_RULESET_NONE;
}

/* The ruleset recorded when the socket was created. Sockets the kernel
 * creates itself never pass sock_create and have no record: MPTCP subflows,
 * which the kernel places in their parent socket's cgroup, so under the
 * same tenant purpose as the task that connects them. For those the
 * calling task's cgroup decides. That grants nothing new: a task in a
 * tenant cgroup already has that ruleset for every socket it creates, and
 * any task outside the tenant cgroups gets NONE (deny). A socket passed
 * between tenants always carries its creator's record, never the caller's. */
static __always_inline __u32 ruleset_of_socket(struct bpf_sock *sk) {
  if (sk) {
    struct sl_sock_val *v = bpf_sk_storage_get(&sl_socks, sk, 0, 0);
    if (v) return v->ruleset;
  }
  return ruleset_of_cgroup(bpf_get_current_cgroup_id());
}

static __always_inline int deny(__u8 hook, __u8 reason, __u32 ruleset, __u8 family,
                                __u8 protocol, const __u8 *daddr, __u32 daddr_len,
                                __be16 dport_be) {
  count(SL_CNT_DENY);
  struct sl_event *e = bpf_ringbuf_reserve(&sl_events, sizeof(*e), 0);
  if (!e) {
    count(SL_CNT_EVENT_DROPPED);
    return SL_DENY;
  }
  e->ts_ns = bpf_ktime_get_boot_ns();
  e->cgroup_id = bpf_get_current_cgroup_id();
  e->pid = bpf_get_current_pid_tgid() >> 32;
  e->ruleset = ruleset;
  e->hook = hook;
  e->reason = reason;
  e->family = family;
  e->protocol = protocol;
  e->dport_be = dport_be;
  e->pad0 = 0;
  __builtin_memset(e->daddr, 0, sizeof(e->daddr));
  if (daddr_len == 4) __builtin_memcpy(e->daddr, daddr, 4);
  if (daddr_len == 16) __builtin_memcpy(e->daddr, daddr, 16);
  bpf_get_current_comm(e->comm, sizeof(e->comm));
  bpf_ringbuf_submit(e, 0);
  return SL_DENY;
}

/* A pin past its TTL allows nothing, even while no agent runs to remove it. */
static __always_inline int pin_live(const struct sl_pin_val *pin) {
  return pin && pin->expires_ns > bpf_ktime_get_coarse_ns();
}

static __always_inline int judge4(__u8 hook, __u32 ruleset, __u8 protocol, __be32 daddr_be,
                                  __be16 dport_be) {
  const __u8 *addr = (const __u8 *)&daddr_be;
  if (ruleset == SL_RULESET_NONE)
    return deny(hook, SL_DENY_NO_RULESET, ruleset, 4, protocol, addr, 4, dport_be);
  /* Pins first: one hash lookup on the hot path. The agent never pins an
   * always-denied address (it checks before pinning and drops pins when
   * the deny list changes), so a pin hit needs no deny check. */
  struct sl_pin4_key pk = {.ruleset = ruleset, .daddr_be = daddr_be, .dport_be = dport_be};
  if (pin_live(bpf_map_lookup_elem(&sl_pins4, &pk))) {
    count(SL_CNT_ALLOW);
    return SL_ALLOW;
  }
  /* Static blocks may contain denied ranges (0.0.0.0/0): deny wins. */
  struct sl_deny4_key dk = {.prefixlen = 32};
  __builtin_memcpy(dk.addr, addr, 4);
  if (bpf_map_lookup_elem(&sl_deny4, &dk))
    return deny(hook, SL_DENY_ALWAYS, ruleset, 4, protocol, addr, 4, dport_be);
  struct sl_block4_key bk = {.prefixlen = SL_LPM_FIXED_BITS + 32};
  __be32 rs_be = bpf_htonl(ruleset);
  __builtin_memcpy(bk.data, &rs_be, 4);
  __builtin_memcpy(bk.data + 4, &dport_be, 2);
  __builtin_memcpy(bk.data + 6, addr, 4);
  if (bpf_map_lookup_elem(&sl_blocks4, &bk)) {
    count(SL_CNT_ALLOW);
    return SL_ALLOW;
  }
  return deny(hook, SL_DENY_NO_RULE, ruleset, 4, protocol, addr, 4, dport_be);
}

static __always_inline int judge6(__u8 hook, __u32 ruleset, __u8 protocol, const __u32 *ip6,
                                  __be16 dport_be) {
  /* ::ffff:a.b.c.d is the IPv4 address it maps: judge it as such, or a
   * dual-stack socket would walk around every IPv4 rule. */
  if (ip6[0] == 0 && ip6[1] == 0 && ip6[2] == bpf_htonl(0x0000ffff))
    return judge4(hook, ruleset, protocol, ip6[3], dport_be);

  const __u8 *addr = (const __u8 *)ip6;
  if (ruleset == SL_RULESET_NONE)
    return deny(hook, SL_DENY_NO_RULESET, ruleset, 6, protocol, addr, 16, dport_be);
  struct sl_pin6_key pk = {.ruleset = ruleset, .dport_be = dport_be};
  __builtin_memcpy(pk.daddr, addr, 16);
  if (pin_live(bpf_map_lookup_elem(&sl_pins6, &pk))) {
    count(SL_CNT_ALLOW);
    return SL_ALLOW;
  }
  struct sl_deny6_key dk = {.prefixlen = 128};
  __builtin_memcpy(dk.addr, addr, 16);
  if (bpf_map_lookup_elem(&sl_deny6, &dk))
    return deny(hook, SL_DENY_ALWAYS, ruleset, 6, protocol, addr, 16, dport_be);
  struct sl_block6_key bk = {.prefixlen = SL_LPM_FIXED_BITS + 128};
  __be32 rs_be = bpf_htonl(ruleset);
  __builtin_memcpy(bk.data, &rs_be, 4);
  __builtin_memcpy(bk.data + 4, &dport_be, 2);
  __builtin_memcpy(bk.data + 6, addr, 16);
  if (bpf_map_lookup_elem(&sl_blocks6, &bk)) {
    count(SL_CNT_ALLOW);
    return SL_ALLOW;
  }
  return deny(hook, SL_DENY_NO_RULE, ruleset, 6, protocol, addr, 16, dport_be);
}

static __always_inline int on_addr4(struct bpf_sock_addr *ctx, __u8 hook) {
  __u32 ruleset = ruleset_of_socket(ctx->sk);
  __be16 port = (__be16)ctx->user_port;
  return judge4(hook, ruleset, (__u8)ctx->protocol, ctx->user_ip4, port);
}

static __always_inline int on_addr6(struct bpf_sock_addr *ctx, __u8 hook) {
  __u32 ruleset = ruleset_of_socket(ctx->sk);
  __u32 ip6[4];
  ip6[0] = ctx->user_ip6[0];
  ip6[1] = ctx->user_ip6[1];
  ip6[2] = ctx->user_ip6[2];
  ip6[3] = ctx->user_ip6[3];
  __be16 port = (__be16)ctx->user_port;
  return judge6(hook, ruleset, (__u8)ctx->protocol, ip6, port);
}

SEC("cgroup/connect4")
int sl_connect4(struct bpf_sock_addr *ctx) { return on_addr4(ctx, SL_HOOK_CONNECT4); }

SEC("cgroup/connect6")
int sl_connect6(struct bpf_sock_addr *ctx) { return on_addr6(ctx, SL_HOOK_CONNECT6); }

SEC("cgroup/sendmsg4")
int sl_sendmsg4(struct bpf_sock_addr *ctx) { return on_addr4(ctx, SL_HOOK_SENDMSG4); }

SEC("cgroup/sendmsg6")
int sl_sendmsg6(struct bpf_sock_addr *ctx) { return on_addr6(ctx, SL_HOOK_SENDMSG6); }

/* Only TCP (and MPTCP) stream and UDP datagram sockets may exist in a
 * tenant cgroup: no raw sockets, no ICMP ping sockets, no SCTP. The
 * creator's cgroup is the socket's cgroup; its ruleset is recorded so that
 * later hooks judge the socket, wherever it travels. */
SEC("cgroup/sock_create")
int sl_sock_create(struct bpf_sock *ctx) {
  __u32 family = ctx->family;
  __u32 type = ctx->type;
  __u32 protocol = ctx->protocol;
  int ok = (family == SL_AF_INET || family == SL_AF_INET6) &&
           ((type == SL_SOCK_STREAM &&
             (protocol == 0 || protocol == SL_IPPROTO_TCP || protocol == SL_IPPROTO_MPTCP)) ||
            (type == SL_SOCK_DGRAM && (protocol == 0 || protocol == SL_IPPROTO_UDP)));
  __u32 ruleset = ruleset_of_cgroup(bpf_get_current_cgroup_id());
  if (!ok) {
    __u8 none[4] = {};
    return deny(SL_HOOK_SOCK_CREATE, SL_DENY_SOCKET_TYPE, ruleset,
                family == SL_AF_INET6 ? 6 : 4, (__u8)protocol, none, 4, 0);
  }
  struct sl_sock_val *v = bpf_sk_storage_get(&sl_socks, ctx, 0, BPF_SK_STORAGE_GET_F_CREATE);
  if (!v) return SL_DENY; /* cannot record the tenant: refuse the socket */
  v->ruleset = ruleset;
  v->pad0 = 0;
  return SL_ALLOW;
}

/* Source routing would send the packet somewhere other than the address
 * the connect hooks judged (IPv4 LSRR/SSRR options, IPv6 routing headers):
 * tenant sockets may not set it. */
#define SL_SOL_IP 0
#define SL_IP_OPTIONS 4
#define SL_SOL_IPV6 41
#define SL_IPV6_2292RTHDR 5
#define SL_IPV6_2292PKTOPTIONS 6
#define SL_IPV6_RTHDR 57
SEC("cgroup/setsockopt")
int sl_setsockopt(struct bpf_sockopt *ctx) {
  const int level = ctx->level, name = ctx->optname;
  if ((level == SL_SOL_IP && name == SL_IP_OPTIONS) ||
      (level == SL_SOL_IPV6 && (name == SL_IPV6_RTHDR || name == SL_IPV6_2292RTHDR ||
                                name == SL_IPV6_2292PKTOPTIONS))) {
    count(SL_CNT_DENY);
    return SL_DENY;
  }
  /* Untouched: values larger than a page need optlen 0 to pass through. */
  if (ctx->optlen > 4096) ctx->optlen = 0;
  return SL_ALLOW;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
