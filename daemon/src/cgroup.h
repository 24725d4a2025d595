// cgroup v2: finding the hierarchy, and the tenant subtree the agent owns:
//   <mount>/<subtree>/tenants/<tenant>/<purpose>
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>

#include "result.h"

namespace sluice::agent {

struct Cgroup2Mount {
  std::string mountpoint;  // "/sys/fs/cgroup/unified" (hybrid) or "/sys/fs/cgroup"
  // The mountpoint relative to /sys/fs/cgroup, where nftables resolves
  // `socket cgroupv2` paths: "unified" or "". Unset when the hierarchy is
  // mounted elsewhere (nftables could not name our cgroups).
  std::string nft_prefix;
};

// Parses /proc/self/mountinfo text. Never hard-code the mount: hosts differ.
Result<Cgroup2Mount> parse_cgroup2_mount(std::string_view mountinfo);
Result<Cgroup2Mount> find_cgroup2_mount();

// The cgroup id the kernel reports to BPF (the cgroup2 inode number).
Result<std::uint64_t> cgroup_id(const std::string& path);

// mkdir -p of an absolute path, each created directory with `mode`.
Status make_directories(const std::string& path, mode_t mode);
// mkdir -p under the cgroup2 mount; each created directory is a cgroup.
inline Status make_cgroup(const std::string& path) { return make_directories(path, 0755); }
// Kills every process in the cgroup tree (cgroup.kill), waits for it to
// empty (bounded), and removes it bottom-up. Missing is success.
Status remove_cgroup_tree(const std::string& path);
// Moves `pid` into the cgroup.
Status move_to_cgroup(const std::string& path, pid_t pid);

// Tenant and purpose names become path components and nftables strings:
// lowercase letters, digits, '-' and '_', 1..63 characters, not starting
// with '-' or '_'.
bool valid_tenant_name(std::string_view name);

}  // namespace sluice::agent
