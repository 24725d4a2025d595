// sluice-agent's core: the state it enforces and the two kernel layers it
// keeps equal to that state. Synchronous: the control server serialises
// calls, so a change is either fully enforced by both layers or reported
// as failed (and rolled back), never silently half-applied.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <deque>
#include <map>
#include <set>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "bpf_layer.h"
#include "brokers.h"
#include "cgroup.h"
#include "config.h"
#include "nft_layer.h"
#include "nft_text.h"
#include "state.h"

namespace sluice::agent {

struct ApplyResult {
  std::uint64_t generation = 0;
  int destroyed = 0;  // live sockets cut because their destination was revoked
};

struct Event {
  std::uint64_t seq = 0;
  std::uint64_t ts_ns = 0;  // CLOCK_BOOTTIME
  std::string kind;         // "deny", "tamper", "revoke", "peer_refused"
  nlohmann::json detail;
};

class Agent {
 public:
  static Result<std::unique_ptr<Agent>> start(AgentConfig config);

  Result<ApplyResult> apply(const std::string& tenant, std::uint64_t version,
                            const policy::EffectiveRules& rules);
  Result<ApplyResult> remove(const std::string& tenant);

  // Pins every address of `host` for (tenant, purpose, port), all or none:
  // one address outside what the policy permits refuses the whole answer.
  Status pin(const std::string& tenant, policy::Purpose purpose, const std::string& host,
             std::uint16_t port, const std::vector<policy::IpAddr>& addrs, std::uint32_t ttl_s);
  // Whether `host` may be resolved at all (checked before any DNS query).
  Status name_allowed(const std::string& tenant, policy::Purpose purpose, const std::string& host,
                      std::uint16_t port) const;
  int expire_pins();

  // A TCP socket created in the tenant's cgroup for `purpose` (by its broker).
  Result<int> socket(const std::string& tenant, policy::Purpose purpose, int family);
  void reap_brokers() { brokers_->reap(); }

  // Verifies links, table and cgroups; repairs and records an event if not.
  // Returns a description of what was repaired ("" when all was intact).
  Result<std::string> tamper_check();
  // Cuts again what a revocation or a removal could not cut (live sockets
  // their new rules refuse); the number cut.
  Result<int> retry_cuts();

  nlohmann::json status();
  void poll_events();
  [[nodiscard]] int events_fd() const { return bpf_->events_fd(); }
  nlohmann::json events_since(std::uint64_t cursor, std::size_t max) const;
  void record(std::string kind, nlohmann::json detail);

  [[nodiscard]] const AgentConfig& config() const { return config_; }
  [[nodiscard]] std::string cgroup_path(const std::string& tenant, policy::Purpose p) const;
  [[nodiscard]] policy::DenyOptions deny_options() const {
    return {.allow_loopback = config_.allow_loopback};
  }

  // Removes everything an instance installed: links, maps, table, cgroups.
  static Status uninstall(const AgentConfig& config);

 private:
  Agent() = default;
  Status reconcile_all();
  Status write_kernel(const AgentState& from, const AgentState& to);
  Status write_nft(const AgentState& to);
  NftTable nft_table(const AgentState& s) const;
  Result<std::map<std::string, MapContent>> bpf_content(const AgentState& s);
  Status refresh_cgroups(const AgentState& s, bool create);
  Status persist();
  void rollback(const AgentState& from, const AgentState& to);
  Result<int> cut_revoked(const std::string& tenant, const TenantState& now);
  // Cuts every socket of a removed tenant's owed cgroup ids; forgets them once cut.
  Result<int> cut_removed(std::map<std::string, std::set<std::uint64_t>>::iterator owed);
  [[nodiscard]] std::vector<policy::Cidr> deny_ranges() const;

  AgentConfig config_;
  Cgroup2Mount mount_;
  std::string subtree_;   // absolute
  std::string tenants_;   // absolute
  int tenants_level_ = 0;
  std::unique_ptr<BpfLayer> bpf_;
  std::unique_ptr<NftLayer> nft_;
  std::unique_ptr<Brokers> brokers_;
  AgentState state_;
  std::map<std::string, std::uint64_t> cgroup_ids_;  // cgroup path -> id
  std::deque<Event> events_;
  std::uint64_t next_event_ = 1;
  std::uint64_t tamper_repairs_ = 0;
  // Generation in the table's comment: that of the last full replacement
  // (element updates in between leave the comment alone).
  std::uint64_t nft_generation_ = 0;
  // This process among the agent's lives (pid and start time), in status:
  // a client that sees it change knows the agent restarted.
  std::string process_ = std::to_string(::getpid()) + "-" + std::to_string(::time(nullptr));
  // Tenants whose last revocation could not cut every live socket.
  std::set<std::string> cut_pending_;
  // Removed tenants' cgroup ids whose live sockets could not all be cut.
  std::map<std::string, std::set<std::uint64_t>> removed_uncut_;
  // Set when what the kernel holds may differ from state_: a rollback
  // failed, or an nftables element update did (the table may keep an
  // expired pin). Both layers report "degraded" until a rebuild succeeds.
  bool kernel_unsure_ = false;
};

std::uint64_t boottime_ns();
// The clock of pin expiry: the BPF hooks compare against
// bpf_ktime_get_coarse_ns(), which reads CLOCK_MONOTONIC (coarse).
std::uint64_t monotonic_ns();

}  // namespace sluice::agent
