// Cutting live connections on revocation: inet_diag dumps every TCP and
// UDP socket with its cgroup id; those in a revoked tenant cgroup whose
// destination the new rules no longer allow get SOCK_DESTROY, so the
// client sees ECONNABORTED at once instead of a hang.
#pragma once

#include <cstdint>
#include <functional>
#include <set>

#include "result.h"
#include "sluice/policy/address.h"

namespace sluice::agent {

struct LiveSocket {
  std::uint64_t cgroup = 0;
  policy::IpAddr dst;
  std::uint16_t dport = 0;
  int protocol = 0;  // IPPROTO_TCP / IPPROTO_UDP
};

// Decides whether a live socket may stay.
using KeepFn = std::function<bool(const LiveSocket&)>;

// Destroys the sockets of `cgroups` that `keep` refuses. Returns how many.
Result<int> destroy_sockets(const std::set<std::uint64_t>& cgroups, const KeepFn& keep);

}  // namespace sluice::agent
