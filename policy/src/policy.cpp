#include "sluice/policy/policy.h"

#include <algorithm>

#include "json_fields.h"

namespace sluice::policy {

using detail::for_each_string;
using detail::read_required_bool;

Results<TenantPolicy> policy_from_json(const nlohmann::json& doc, const DenyOptions& options) {
  ErrorSink errors;
  if (!doc.is_object()) {
    errors.add(Error{ErrorCode::wrong_type, "",
                     "a policy must be a JSON object, got " + std::string(detail::type_name(doc))});
    return tl::unexpected(errors.take());
  }
  detail::check_known_fields(
      doc, {"allow_llm_egress", "allow_prospecting", "discovery_samples", "egress_allowlist"}, "",
      errors);

  TenantPolicy policy;
  policy.allow_llm_egress = read_required_bool(doc, "allow_llm_egress", "", errors);
  policy.allow_prospecting = read_required_bool(doc, "allow_prospecting", "", errors);
  policy.discovery_samples = read_required_bool(doc, "discovery_samples", "", errors);

  std::vector<Entry> entries;
  const bool present = for_each_string(
      doc, "egress_allowlist", "", kMaxAllowlistEntries, errors,
      [&](const std::string& path, const std::string& text) {
        auto entry = parse_entry(text, options);
        if (!entry) {
          errors.add(entry.error().at(path));
        } else {
          entries.push_back(std::move(*entry));
        }
      });
  if (present) {
    std::sort(entries.begin(), entries.end());
    entries.erase(std::unique(entries.begin(), entries.end()), entries.end());
    policy.egress_allowlist = std::move(entries);
  }

  if (!errors.empty()) return tl::unexpected(errors.take());
  return policy;
}

Results<TenantPolicy> parse_policy(std::string_view json_text, const DenyOptions& options) {
  auto doc = parse_json_strictly(json_text, kMaxPolicyBytes, kMaxPolicyValues);
  if (!doc) return tl::unexpected(std::vector<Error>{doc.error()});
  return policy_from_json(*doc, options);
}

nlohmann::json to_json(const TenantPolicy& policy) {
  nlohmann::json out = {
      {"allow_llm_egress", policy.allow_llm_egress},
      {"allow_prospecting", policy.allow_prospecting},
      {"discovery_samples", policy.discovery_samples},
      {"egress_allowlist", nullptr},
  };
  if (policy.egress_allowlist) {
    auto& list = out["egress_allowlist"] = nlohmann::json::array();
    for (const Entry& e : *policy.egress_allowlist) list.push_back(e.to_string());
  }
  return out;
}

}  // namespace sluice::policy
