// What the agent enforces, as data: tenants, their rulesets and pins. The
// kernel maps and the nft table are derived from it; it is saved in the
// runtime directory (same lifetime as the bpffs pins and the nft table) so
// a restarted agent reconciles both layers to exactly what was acknowledged.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "result.h"
#include "sluice/policy/rules.h"

namespace sluice::agent {

struct PinKey {
  policy::IpAddr addr;
  std::uint16_t port = 0;
  auto operator<=>(const PinKey&) const = default;
};

struct Pin {
  std::string host;             // the name resolved (canonical)
  std::uint64_t expires_ns = 0;  // CLOCK_MONOTONIC
};

struct PurposeState {
  std::uint32_t ruleset = 0;  // never SL_RULESET_NONE once assigned
  policy::PurposeRules rules;
  std::map<PinKey, Pin> pins;
};

struct TenantState {
  std::uint64_t version = 0;
  std::array<PurposeState, 3> purposes;

  PurposeState& of(policy::Purpose p) { return purposes[static_cast<std::size_t>(p)]; }
  [[nodiscard]] const PurposeState& of(policy::Purpose p) const {
    return purposes[static_cast<std::size_t>(p)];
  }
};

struct AgentState {
  std::uint64_t generation = 0;  // bumped by every change to either layer
  std::uint32_t next_ruleset = 1;
  std::map<std::string, TenantState> tenants;
};

nlohmann::json to_json(const AgentState& state);
Result<AgentState> state_from_json(const nlohmann::json& doc, const policy::DenyOptions& deny);

// Atomic replace: write a temporary file, fsync, rename.
Status save_state(const std::string& path, const AgentState& state);
// A missing file is an empty state.
Result<AgentState> load_state(const std::string& path, const policy::DenyOptions& deny);

}  // namespace sluice::agent
