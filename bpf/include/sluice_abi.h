/* sluice_abi.h — the one ABI shared by the BPF programs (bpf/sluice.bpf.c)
 * and sluice-agent. Fixed-width types, explicit padding, `_be` for network
 * byte order, a size assertion per struct. The ABI version is part of the
 * bpffs pin path: a layout change gets fresh maps, refilled from policy.
 *
 * Included from BPF C (clang -target bpf) and from C++20.
 */
#ifndef SLUICE_ABI_H
#define SLUICE_ABI_H

#include <linux/types.h>

#define SL_ABI_VERSION 1

#ifdef __cplusplus
#define SL_ABI_ASSERT(cond, msg) static_assert(cond, msg)
#else
#define SL_ABI_ASSERT(cond, msg) _Static_assert(cond, msg)
#endif

/* Capacities. Pins are per (ruleset, address, port); static blocks per
 * (ruleset, block, port). The agent refuses work beyond these. */
#define SL_MAX_CGROUPS 4096
#define SL_MAX_PINS 262144
#define SL_MAX_BLOCKS 65536
#define SL_MAX_DENY 1024
#define SL_EVENTS_BYTES (256 * 1024)

/* Ruleset 0 never has rules: sockets in the tenants subtree whose cgroup has
 * no ruleset (an unknown or half-created tenant) are denied everything. */
#define SL_RULESET_NONE 0

/* cgroup id (the cgroup2 inode number) -> the ruleset of (tenant, purpose). */
struct sl_cgroup_val {
  __u32 ruleset;
  __u32 flags; /* reserved, 0 */
};
SL_ABI_ASSERT(sizeof(struct sl_cgroup_val) == 8, "sl_cgroup_val changed: bump SL_ABI_VERSION");

/* Socket-local storage: the ruleset of the cgroup a socket was created in.
 * Set by sock_create, read by connect/sendmsg: a socket handed to a process
 * outside the tenant keeps its tenant's rights, no more. */
struct sl_sock_val {
  __u32 ruleset;
  __u32 pad0;
};
SL_ABI_ASSERT(sizeof(struct sl_sock_val) == 8, "sl_sock_val changed: bump SL_ABI_VERSION");

/* A resolved name pinned for a ruleset: exact address and port. */
struct sl_pin4_key {
  __u32 ruleset;
  __be32 daddr_be;
  __be16 dport_be;
  __u16 pad0;
};
SL_ABI_ASSERT(sizeof(struct sl_pin4_key) == 12, "sl_pin4_key changed: bump SL_ABI_VERSION");

struct sl_pin6_key {
  __u32 ruleset;
  __u8 daddr[16];
  __be16 dport_be;
  __u16 pad0;
};
SL_ABI_ASSERT(sizeof(struct sl_pin6_key) == 24, "sl_pin6_key changed: bump SL_ABI_VERSION");

/* Value of a pin: when it expires, in CLOCK_MONOTONIC ns. The hooks refuse
 * an expired pin even while no agent runs to remove it; they read the
 * coarse clock (one jiffy of slack), which costs a few ns where the
 * precise one cost ~90 ns per connect on a virtualised host. */
struct sl_pin_val {
  __u64 expires_ns;
};
SL_ABI_ASSERT(sizeof(struct sl_pin_val) == 8, "sl_pin_val changed: bump SL_ABI_VERSION");

/* LPM trie keys for static blocks. The matched bits are ruleset (32, big
 * endian), port (16, big endian), then the address: every rule has an exact
 * ruleset and port, so prefixlen = 48 + the block's prefix length. */
#define SL_LPM_FIXED_BITS 48
struct sl_block4_key {
  __u32 prefixlen;
  __u8 data[10]; /* ruleset_be[4] port_be[2] addr[4] */
  __u16 pad0;    /* not part of the match: prefixlen never reaches it */
};
SL_ABI_ASSERT(sizeof(struct sl_block4_key) == 16, "sl_block4_key changed: bump SL_ABI_VERSION");

struct sl_block6_key {
  __u32 prefixlen;
  __u8 data[22]; /* ruleset_be[4] port_be[2] addr[16] */
  __u16 pad0;
};
SL_ABI_ASSERT(sizeof(struct sl_block6_key) == 28, "sl_block6_key changed: bump SL_ABI_VERSION");

/* Always-denied ranges, checked before any allow rule. */
struct sl_deny4_key {
  __u32 prefixlen;
  __u8 addr[4];
};
SL_ABI_ASSERT(sizeof(struct sl_deny4_key) == 8, "sl_deny4_key changed: bump SL_ABI_VERSION");

struct sl_deny6_key {
  __u32 prefixlen;
  __u8 addr[16];
};
SL_ABI_ASSERT(sizeof(struct sl_deny6_key) == 20, "sl_deny6_key changed: bump SL_ABI_VERSION");

/* Which hook judged. */
enum sl_hook {
  SL_HOOK_CONNECT4 = 1,
  SL_HOOK_CONNECT6 = 2,
  SL_HOOK_SENDMSG4 = 3,
  SL_HOOK_SENDMSG6 = 4,
  SL_HOOK_SOCK_CREATE = 5,
};

/* Why a deny happened. */
enum sl_reason {
  SL_DENY_NO_RULE = 1,       /* destination not pinned nor in a static block */
  SL_DENY_ALWAYS = 2,        /* always-denied range (link-local, metadata, ...) */
  SL_DENY_NO_RULESET = 3,    /* socket's cgroup has no ruleset */
  SL_DENY_SOCKET_TYPE = 4,   /* raw, ICMP, or anything but TCP/UDP */
};

/* One deny, to the ring buffer. */
struct sl_event {
  __u64 ts_ns;     /* bpf_ktime_get_boot_ns */
  __u64 cgroup_id; /* of the calling task */
  __u32 pid;       /* tgid of the calling task */
  __u32 ruleset;
  __u8 hook;       /* enum sl_hook */
  __u8 reason;     /* enum sl_reason */
  __u8 family;     /* 4 or 6 (after v4-mapped normalisation) */
  __u8 protocol;   /* IPPROTO_* of the socket */
  __be16 dport_be;
  __u16 pad0;
  __u8 daddr[16];  /* v4 in the first 4 bytes */
  char comm[16];
};
SL_ABI_ASSERT(sizeof(struct sl_event) == 64, "sl_event changed: bump SL_ABI_VERSION");

/* Per-CPU counters, indexed by these. */
enum sl_counter {
  SL_CNT_ALLOW = 0,
  SL_CNT_DENY = 1,
  SL_CNT_EVENT_DROPPED = 2, /* ring buffer full */
  SL_CNT_MAX = 4,
};

#endif /* SLUICE_ABI_H */
