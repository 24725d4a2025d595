// Tenant policies in the kernel. mcpd stores each policy version as
// desired, pushes it to sluice-agent (control socket, `apply`), and reports
// per tenant what both kernel layers enforce. A version counts as enforced
// only when the agent acknowledged it and reports both layers enforcing it;
// anything else is pending (agent configured) or absent (no agent).
//
// While the kernel lags, the application layer enforces the stricter of
// the desired and the last applied version (DESIGN.md "Tenant policy"):
// `Enforcer::effective`. A tenant whose policy never reached the kernel is
// allowed nothing.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config.h"
#include "sluice/policy/endpoints.h"
#include "sluice/policy/policy.h"
#include "sluice/policy/rules.h"
#include "status.h"
#include "store.h"

namespace sluice::mcpd {

struct KernelEnforcement {
  enum class State { absent, pending, enforced };
  State state = State::absent;
  std::string detail;                   // why it is not enforced; empty when it is
  std::optional<std::int64_t> version;  // the version the agent enforces, when known
  nlohmann::json layers;                // the agent's {"bpf": ..., "nftables": ...}; null if unknown
};
nlohmann::json to_json(const KernelEnforcement& k);

// The stricter of two policies: each switch only if both allow it; the
// allowlist entries both contain (an absent allowlist imposes nothing).
policy::TenantPolicy stricter(const policy::TenantPolicy& a, const policy::TenantPolicy& b);
// Nothing allowed: an empty allowlist and every switch off.
policy::TenantPolicy deny_all();

// The endpoints file `config` names, parsed (a configuration error names
// the file and the entry). Only when an agent is configured.
Result<policy::EndpointsConfig> read_endpoints(const McpdConfig& config);

class Enforcer {
 public:
  // Reads the endpoints file when an agent is configured; a bad file
  // refuses start-up (it names the file).
  static Result<std::unique_ptr<Enforcer>> open(const McpdConfig& config, Store& store);

  [[nodiscard]] bool configured() const { return !socket_.empty(); }
  [[nodiscard]] const policy::DenyOptions& deny() const { return deny_; }

  // Pushes `version` (already stored) of the tenant's policy and records it
  // as applied once the agent enforces it in both layers. Blocks for at
  // most about twice the agent timeout.
  KernelEnforcement push(const Tenant& tenant, std::int64_t version, const policy::TenantPolicy& policy);

  // What the agent enforces for the tenant now, against the newest stored
  // version (`desired`; nullopt when the tenant has none).
  KernelEnforcement state(const Tenant& tenant, std::optional<std::int64_t> desired);

  // Pushes every tenant whose newest version the agent does not enforce
  // (a push that failed earlier, an agent that lost its state), and says
  // what came of each push. Bounded: no new push starts once twice the
  // agent timeout has passed (the rest wait for the next call, which
  // starts where this one stopped), and a version the agent took but does
  // not enforce (refused, timed out, or not reported enforced) is tried
  // again after an interval that doubles each time, from `[agent]
  // retry_ms` up to ten minutes: an agent that refuses or stalls on a
  // version costs the admin thread one exchange per interval, not one per
  // tick. A push that found no agent listening is tried again next round,
  // and every back-off ends when the agent restarts (its status names
  // another process) or answers again after a round it could not be reached.
  struct Pushed {
    Tenant tenant;
    std::int64_t version = 0;
    KernelEnforcement outcome;
  };
  std::vector<Pushed> reconcile();

  // The policy the application layer enforces for the tenant now.
  Result<policy::TenantPolicy> effective(const Tenant& tenant);

  // Whether `p` lets anything leave the internal networks; nullopt when no
  // endpoints are configured (no agent) and the question has no answer.
  [[nodiscard]] std::optional<bool> egresses(const policy::TenantPolicy& p) const;

 private:
  // What mcpd uses of the agent's status reply, every field checked.
  struct AgentView {
    std::string bpf = "unknown", nftables = "unknown";  // "enforcing" | "degraded" | "unknown"
    std::map<std::string, std::uint64_t> versions;        // tenant -> version it enforces
    std::string process;                                  // changes when the agent restarts ("" if unsaid)
  };
  // A tenant's newest stored version and the digest of the rules it
  // compiles to now (an error when it no longer compiles).
  struct Desired {
    std::int64_t version = 0;
    Result<std::string> digest;
  };

  Enforcer(const McpdConfig& config, Store& store);
  // The agent's status, or why there is none; cached for a second, a
  // failure for five (an agent that hangs costs one timeout per five
  // seconds, not one per caller queued behind it).
  Result<AgentView> agent_status();
  // Enforced only when the agent reports both layers enforcing and this
  // version, and this mcpd recorded the agent acknowledging these very
  // rules (store policy_applied: version and rules digest).
  KernelEnforcement judge(const AgentView& view, const Tenant& tenant, const std::optional<Desired>& desired) const;
  std::optional<Desired> desired(const Tenant& tenant, std::optional<std::int64_t> version);
  // What "the same rules" means: SHA-256 (hex) of their canonical JSON.
  static std::string rules_digest(const policy::EffectiveRules& rules);
  // `reached`, if given, says whether the agent's socket took the apply
  // at all (a refusal or a timeout after connecting did; a dead socket
  // did not).
  KernelEnforcement push_locked(const Tenant& tenant, std::int64_t version, const policy::TenantPolicy& p,
                                bool* reached = nullptr);
  Result<policy::TenantPolicy> stored(const Tenant& tenant, std::int64_t version);
  // One tenant's part of reconcile (mu_ held).
  void reconcile_one(const Tenant& t, const AgentView& view, std::chrono::steady_clock::time_point now,
                     std::vector<Pushed>& pushed);

  std::string socket_;
  int timeout_ms_;
  policy::DenyOptions deny_;
  policy::EndpointsConfig endpoints_;
  Store& store_;
  // One push or status question at a time: versions reach the agent in
  // order, and the cache below is consistent. Timed: a read of the state
  // waits out a status question, not a push (state()).
  std::timed_mutex mu_;
  // The status question itself, uncached (agent_status caches it).
  Result<AgentView> ask_agent_status();
  std::optional<Result<AgentView>> cached_;
  std::chrono::steady_clock::time_point cached_at_;
  // Failed reconcile pushes by tenant id: what was pushed (version and
  // rules digest), how often it failed, when it may be tried again.
  struct Backoff {
    std::int64_t version = 0;
    std::string digest;
    unsigned failures = 0;
    std::chrono::steady_clock::time_point next;
  };
  std::map<std::int64_t, Backoff> backoff_;
  std::chrono::milliseconds retry_;
  std::int64_t resume_after_ = 0;  // the tenant id the last reconcile stopped after
  // The agent process the last round's status named; none when that round
  // could not reach it. Any change ends every back-off.
  std::optional<std::string> agent_process_;
};

}  // namespace sluice::mcpd
