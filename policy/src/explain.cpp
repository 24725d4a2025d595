#include <sstream>

#include "sluice/policy/rules.h"

namespace sluice::policy {

std::string explain(const TenantPolicy& policy, const EndpointsConfig& config,
                    const EffectiveRules& rules) {
  std::ostringstream out;
  out << "Policy: allow_llm_egress=" << std::boolalpha << policy.allow_llm_egress
      << " allow_prospecting=" << policy.allow_prospecting
      << " discovery_samples=" << policy.discovery_samples << "\n";
  if (policy.egress_allowlist) {
    out << "Allowlist: " << policy.egress_allowlist->size() << " entries\n";
  } else {
    out << "Allowlist: none (the configured endpoints are the only destinations)\n";
  }
  out << "Internal networks: ";
  if (config.internal_networks.empty()) out << "none configured";
  for (std::size_t i = 0; i < config.internal_networks.size(); ++i) {
    out << (i ? ", " : "") << config.internal_networks[i].to_string();
  }
  out << "\n";
  const bool external = egresses(rules, config.internal_networks);
  out << "Data egress: " << (external ? "EXTERNAL" : "NONE") << "\n";

  for (Purpose p : kPurposes) {
    const PurposeRules& r = rules.of(p);
    out << "\n" << to_string(p) << (egresses(r, config.internal_networks) ? " (egresses)" : "")
        << ":\n";
    if (r.decisions.empty()) out << "  no endpoints configured\n";
    for (const Decision& d : r.decisions) {
      out << "  " << (d.allowed ? "ALLOW " : "BLOCK ") << d.endpoint << "\n      " << d.reason
          << "\n";
    }
    if (r.empty()) {
      out << "  kernel rules: none (every connection denied)\n";
      continue;
    }
    out << "  kernel rules:\n";
    for (const HostRule& h : r.hosts) {
      out << "    name  " << h.pattern.to_string() << " port " << h.port;
      if (h.scope) {
        out << " resolved only into";
        for (const Cidr& c : *h.scope) out << " " << c.to_string();
      } else {
        out << " any resolved address";
      }
      out << "\n";
    }
    for (const CidrRule& c : r.cidrs) {
      out << "    block " << c.block.to_string() << " port " << c.port << "\n";
    }
  }
  out << "\nAlways denied, whatever the policy:";
  for (const DeniedRange& d : always_denied(DenyOptions{})) {
    out << "\n  " << d.range.to_string() << " (" << d.why << ")";
  }
  out << "\n";
  return out.str();
}

}  // namespace sluice::policy
