// The tenant policy document:
//
//   { "allow_llm_egress": true, "allow_prospecting": false,
//     "discovery_samples": false,
//     "egress_allowlist": ["api.anthropic.com", "10.20.0.0/16:443"] }
//
// The three flags are required; egress_allowlist may be absent or null (no
// allowlist) or an array of at most 4096 entries. Unknown fields, wrong
// types and duplicate keys are errors. A parsed policy is normalised: its
// allowlist is sorted and free of duplicates, so equal policies compare
// equal and serialise to the same bytes.
#pragma once

#include <optional>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/policy/entry.h"

namespace sluice::policy {

inline constexpr std::size_t kMaxAllowlistEntries = 4096;
// Values in a policy or endpoints document: a few per allowlist entry.
inline constexpr std::size_t kMaxPolicyValues = 100000;
// A policy document larger than this is refused before parsing: 4096
// maximal entries with quoting fit comfortably.
inline constexpr std::size_t kMaxPolicyBytes = 2 * 1024 * 1024;
inline constexpr int kMaxJsonDepth = 32;

struct TenantPolicy {
  bool allow_llm_egress = false;
  bool allow_prospecting = false;
  bool discovery_samples = false;
  std::optional<std::vector<Entry>> egress_allowlist;  // nullopt: no allowlist

  bool operator==(const TenantPolicy&) const = default;
};

// Parses JSON text; every error found is returned, each naming its field.
Results<TenantPolicy> parse_policy(std::string_view json_text, const DenyOptions& options = {});
// The same on an already parsed document (duplicate keys cannot be seen here).
Results<TenantPolicy> policy_from_json(const nlohmann::json& doc, const DenyOptions& options = {});

nlohmann::json to_json(const TenantPolicy& policy);

// Parses JSON with bounds (size, nesting depth, values) and refuses
// duplicate object keys, which nlohmann would otherwise resolve silently
// (last one wins) — two readers of one document must never disagree. The
// value bound holds the tree's memory to the document's worth: a tree
// costs far more than its text (`[{},{},...]` ~20 bytes of heap a byte).
inline constexpr std::size_t kMaxJsonValues = 2000000;
Result<nlohmann::json> parse_json_strictly(std::string_view text, std::size_t max_bytes,
                                           std::size_t max_values = kMaxJsonValues);

}  // namespace sluice::policy
