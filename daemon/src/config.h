// sluice-agent configuration (TOML). Every key is checked; an unknown key,
// a wrong type or an invalid value refuses start-up with a message naming
// the key. The agent never starts half-configured.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "result.h"
#include "sluice/policy/entry.h"

namespace sluice::agent {

struct DnsServer {
  policy::IpAddr addr;
  std::uint16_t port = 53;
};

struct AgentConfig {
  std::string instance = "sluice";       // names cgroup subtree, bpffs dir, nft table, run dir
  std::string cgroup_subtree;            // relative to the cgroup2 mount; default = instance
  std::vector<std::uint32_t> allowed_peer_uids;  // besides root
  // Control socket and saved state; a tmpfs, like bpffs, so the state
  // lives exactly as long as the pins and the nft table it describes.
  std::string runtime_dir;               // default /run/<instance>
  std::string bpffs = "/sys/fs/bpf";
  std::string broker_path;               // default: sluice-broker next to the agent
  std::uint32_t broker_uid = 65534;      // nobody
  std::uint32_t broker_gid = 65534;
  bool allow_loopback = false;           // test set-ups only: tenants may reach loopback
  std::uint32_t tamper_check_ms = 2000;

  std::vector<DnsServer> dns_servers;
  std::map<std::string, std::vector<policy::IpAddr>> static_hosts;
  std::uint32_t min_ttl_s = 30;
  std::uint32_t max_ttl_s = 86400;
  std::uint32_t dns_timeout_ms = 3000;

  std::vector<policy::Cidr> internal_networks;
  std::vector<policy::Cidr> extra_deny;

  [[nodiscard]] std::string control_socket() const { return runtime_dir + "/agent.sock"; }
  [[nodiscard]] std::string pin_dir() const;  // <bpffs>/<instance>/v<abi>
};

Result<AgentConfig> parse_config(std::string_view toml_text);
Result<AgentConfig> load_config(const std::string& path);

}  // namespace sluice::agent
