// Compilation of a tenant policy into the rules the kernel enforces, per
// purpose, and the questions later layers ask of them.
//
// Semantics (DESIGN.md "Tenant policy"):
//  - llm and embeddings: the configured endpoints, intersected with the
//    allowlist when one is set; with allow_llm_egress=false only what lies
//    inside the internal networks remains (names keep working but may only
//    be pinned to internal addresses).
//  - prospecting: the prospecting endpoints if allow_prospecting, likewise
//    intersected; nothing otherwise.
// Every rule carries a concrete port: that of the endpoint it came from.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/policy/endpoints.h"
#include "sluice/policy/policy.h"

namespace sluice::policy {

// Connections to names matching `pattern` on `port`. The agent resolves the
// name and pins each answer; `scope`, when set, lists the only blocks a
// resolved address may fall in (an answer outside is refused).
struct HostRule {
  HostPattern pattern;
  std::uint16_t port = 0;
  std::optional<std::vector<Cidr>> scope;  // nullopt: any address not always-denied
  // The scope is the internal networks' (allow_llm_egress=false, or a name
  // under internal_domains), not an allowlist's: the agent bounds it by its
  // own internal networks too.
  bool confined = false;

  auto operator<=>(const HostRule&) const = default;
};

// Connections to any address of `block` on `port`, without resolution.
struct CidrRule {
  Cidr block;
  std::uint16_t port = 0;

  auto operator<=>(const CidrRule&) const = default;
};

// Why one configured endpoint is allowed or blocked for one purpose.
struct Decision {
  std::string endpoint;  // Endpoint::spec
  bool allowed = false;
  std::string reason;

  bool operator==(const Decision&) const = default;
};

struct PurposeRules {
  std::vector<HostRule> hosts;  // sorted, unique
  std::vector<CidrRule> cidrs;  // sorted, unique
  std::vector<Decision> decisions;

  [[nodiscard]] bool empty() const { return hosts.empty() && cidrs.empty(); }
  // Rules alone (decisions are commentary).
  [[nodiscard]] bool same_rules(const PurposeRules& o) const {
    return hosts == o.hosts && cidrs == o.cidrs;
  }
  bool operator==(const PurposeRules&) const = default;
};

struct EffectiveRules {
  std::array<PurposeRules, 3> purposes;

  [[nodiscard]] const PurposeRules& of(Purpose p) const {
    return purposes[static_cast<std::size_t>(p)];
  }
  PurposeRules& of(Purpose p) { return purposes[static_cast<std::size_t>(p)]; }
  bool operator==(const EffectiveRules&) const = default;
};

EffectiveRules compile(const TenantPolicy& policy, const EndpointsConfig& config);

// Whether the rules can reach anything outside `internal_networks`: a
// static block not inside them, or a name whose scope is not confined to
// them. Drives the "Data egress: NONE" / "EXTERNAL" banner.
bool egresses(const EffectiveRules& rules, const std::vector<Cidr>& internal_networks);
bool egresses(const PurposeRules& rules, const std::vector<Cidr>& internal_networks);

// --- questions asked at enforcement time ----------------------------------

// Host names passed here must be canonical (see canonical_hostname).
// Whether a name may be resolved for this purpose on `port` at all.
bool name_allowed(const PurposeRules& rules, std::string_view host, std::uint16_t port);
// Whether `host` resolving to `addr` may be pinned for `port`: some rule
// matching the name on the port has a scope containing the address.
// Addresses in always-denied ranges are never allowed. `internal_bound`,
// when not empty, bounds the scope of every confined rule: the address
// must lie inside it as well, whatever networks the rules call internal.
bool pin_allowed(const PurposeRules& rules, std::string_view host, const IpAddr& addr,
                 std::uint16_t port, const DenyOptions& options,
                 const std::vector<Cidr>& internal_bound = {});
// Whether a connection to a literal address is allowed by a static rule.
bool address_allowed(const PurposeRules& rules, const IpAddr& addr, std::uint16_t port,
                     const DenyOptions& options);

// --- change -----------------------------------------------------------------

// What a new rule set no longer allows (and newly allows). An old rule
// counts as revoked only when no new rule covers it: same port, a pattern
// matching at least the same names, a scope at least as wide.
struct PurposeDiff {
  std::vector<HostRule> revoked_hosts;
  std::vector<CidrRule> revoked_cidrs;
  std::vector<HostRule> granted_hosts;
  std::vector<CidrRule> granted_cidrs;

  [[nodiscard]] bool revokes() const { return !revoked_hosts.empty() || !revoked_cidrs.empty(); }
};

struct RulesDiff {
  std::array<PurposeDiff, 3> purposes;

  [[nodiscard]] const PurposeDiff& of(Purpose p) const {
    return purposes[static_cast<std::size_t>(p)];
  }
  [[nodiscard]] bool revokes() const;
};

RulesDiff diff(const EffectiveRules& before, const EffectiveRules& after);

// --- serialisation (the agent's wire format and `explain --json`) ----------

nlohmann::json to_json(const EffectiveRules& rules);
nlohmann::json to_json(const RulesDiff& diff);
Results<EffectiveRules> rules_from_json(const nlohmann::json& doc, const DenyOptions& options = {});

// Human-readable explanation, one block per purpose.
std::string explain(const TenantPolicy& policy, const EndpointsConfig& config,
                    const EffectiveRules& rules);

}  // namespace sluice::policy
