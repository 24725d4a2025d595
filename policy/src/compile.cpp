// Policy + configuration -> per-purpose rules, and the questions asked of
// those rules at enforcement time.
#include <algorithm>
#include <bitset>
#include <map>
#include <set>
#include <string_view>
#include <tuple>

#include "sluice/policy/rules.h"

namespace sluice::policy {
namespace {

using Scope = std::optional<std::vector<Cidr>>;  // nullopt: unrestricted

// `scope` narrowed to `to`. CIDR blocks nest or are disjoint, so the
// pairwise intersections are exactly the common addresses.
std::vector<Cidr> restrict_scope(const Scope& scope, const std::vector<Cidr>& to) {
  if (!scope) return normalize(to);
  std::vector<Cidr> out;
  for (const Cidr& a : *scope) {
    for (const Cidr& b : to) {
      if (auto i = intersect(a, b)) out.push_back(*i);
    }
  }
  return normalize(std::move(out));
}

std::string list_blocks(const std::vector<Cidr>& blocks) {
  std::string out;
  for (const Cidr& c : blocks) out += (out.empty() ? "" : ", ") + c.to_string();
  return out;
}

// Folds rules for the same (pattern, port) into one with the union of
// their scopes (unrestricted wins), then sorts. One pass after sorting, so
// compiling thousands of entries stays O(n log n).
void merge_host_rules(std::vector<HostRule>& hosts) {
  std::sort(hosts.begin(), hosts.end(), [](const HostRule& a, const HostRule& b) {
    return std::tie(a.pattern, a.port) < std::tie(b.pattern, b.port);
  });
  std::vector<HostRule> out;
  for (HostRule& r : hosts) {
    if (!out.empty() && out.back().pattern == r.pattern && out.back().port == r.port) {
      HostRule& m = out.back();
      if (!m.scope || !r.scope) {
        m.scope.reset();
      } else {
        m.scope->insert(m.scope->end(), r.scope->begin(), r.scope->end());
      }
      // Confined only if every part was, and only with a scope left.
      m.confined = m.confined && r.confined && m.scope.has_value();
      continue;
    }
    out.push_back(std::move(r));
  }
  for (HostRule& r : out) {
    if (r.scope) r.scope = normalize(std::move(*r.scope));
  }
  hosts = std::move(out);
}

struct Candidate {
  HostPattern pattern;
  Scope scope;
  std::string via;
  bool confined = false;  // the scope is (inside) the internal networks
};

// One host-name endpoint for one purpose.
Decision compile_host(const TenantPolicy& policy, const EndpointsConfig& config, bool llm_like,
                      const Endpoint& endpoint, const HostPattern& host, PurposeRules& out) {
  const std::uint16_t port = endpoint.port();
  Decision decision{endpoint.spec, false, {}};
  Scope base;
  const bool internal_name = config.is_internal_name(host);
  if (internal_name) base = config.internal_networks;

  std::vector<Candidate> candidates;
  if (policy.egress_allowlist) {
    for (const Entry& a : *policy.egress_allowlist) {
      if (!a.port_allows(port)) continue;
      const std::string via = "allowlist entry \"" + a.to_string() + "\"";
      if (const HostPattern* ah = a.host()) {
        if (auto i = intersect(host, *ah)) candidates.push_back({*i, base, via, internal_name});
      } else {
        candidates.push_back({host, restrict_scope(base, {*a.cidr()}), via, internal_name});
      }
    }
    if (candidates.empty()) {
      decision.reason = "blocked: no egress_allowlist entry matches " + host.to_string() +
                        " on port " + std::to_string(port);
      return decision;
    }
  } else {
    candidates.push_back({host, base, "configured endpoint, no allowlist set", internal_name});
  }

  const bool confine = llm_like && !policy.allow_llm_egress;
  // Several allowlist entries may admit the same pattern (a name entry and
  // a CIDR entry, say): merge them so each pattern is explained once, with
  // the union of its scopes.
  std::map<HostPattern, Candidate> merged;
  for (Candidate& c : candidates) {
    if (confine) {
      c.scope = restrict_scope(c.scope, config.internal_networks);
      c.confined = true;
    }
    if (c.scope && c.scope->empty()) continue;
    auto [it, inserted] = merged.try_emplace(c.pattern, c);
    if (inserted) continue;
    Candidate& m = it->second;
    m.via += ", " + c.via;
    m.confined = m.confined && c.confined;  // a union reaching beyond them is not
    if (!m.scope || !c.scope) {
      m.scope.reset();
    } else {
      m.scope->insert(m.scope->end(), c.scope->begin(), c.scope->end());
    }
  }
  std::vector<std::string> granted;
  for (auto& [pattern, c] : merged) {
    if (c.scope) c.scope = normalize(std::move(*c.scope));
    std::string line = c.pattern.to_string() + ":" + std::to_string(port) + " (" + c.via;
    if (c.scope) line += "; resolved addresses must lie in " + list_blocks(*c.scope);
    granted.push_back(line + ")");
    out.hosts.push_back(HostRule{c.pattern, port, c.scope, c.confined && c.scope.has_value()});
  }
  if (granted.empty()) {
    if (confine) {
      decision.reason = config.internal_networks.empty()
                            ? "blocked: allow_llm_egress is false and no internal networks are "
                              "configured"
                            : "blocked: allow_llm_egress is false and the allowed addresses lie "
                              "outside the internal networks";
    } else {
      decision.reason = "blocked: " + host.to_string() +
                        " is an internal name but the allowed addresses lie outside the "
                        "internal networks";
    }
    return decision;
  }
  decision.allowed = true;
  decision.reason = "allowed: ";
  for (std::size_t i = 0; i < granted.size(); ++i) decision.reason += (i ? "; " : "") + granted[i];
  if (confine) decision.reason += " — allow_llm_egress is false: internal addresses only";
  return decision;
}

// One address or block endpoint for one purpose.
Decision compile_block(const TenantPolicy& policy, const EndpointsConfig& config, bool llm_like,
                       const Endpoint& endpoint, const Cidr& block, PurposeRules& out) {
  const std::uint16_t port = endpoint.port();
  Decision decision{endpoint.spec, false, {}};
  std::vector<std::pair<Cidr, std::string>> pieces;
  if (policy.egress_allowlist) {
    for (const Entry& a : *policy.egress_allowlist) {
      if (!a.port_allows(port) || !a.cidr()) continue;
      if (auto i = intersect(block, *a.cidr())) {
        pieces.emplace_back(*i, "allowlist entry \"" + a.to_string() + "\"");
      }
    }
    if (pieces.empty()) {
      decision.reason = "blocked: no egress_allowlist entry covers " + block.to_string() +
                        " on port " + std::to_string(port);
      return decision;
    }
  } else {
    pieces.emplace_back(block, "configured endpoint, no allowlist set");
  }

  const bool confine = llm_like && !policy.allow_llm_egress;
  std::vector<std::string> granted;
  for (const auto& [piece, via] : pieces) {
    const std::vector<Cidr> allowed =
        confine ? restrict_scope(std::vector<Cidr>{piece}, config.internal_networks)
                : std::vector<Cidr>{piece};
    for (const Cidr& c : allowed) {
      out.cidrs.push_back(CidrRule{c, port});
      granted.push_back(c.to_string() + " port " + std::to_string(port) + " (" + via + ")");
    }
  }
  if (granted.empty()) {
    decision.reason = "blocked: allow_llm_egress is false and " + block.to_string() +
                      " is outside the internal networks";
    return decision;
  }
  decision.allowed = true;
  decision.reason = "allowed: ";
  for (std::size_t i = 0; i < granted.size(); ++i) decision.reason += (i ? "; " : "") + granted[i];
  if (confine) decision.reason += " — allow_llm_egress is false: internal addresses only";
  return decision;
}

bool scope_covers(const Scope& outer, const Scope& inner) {
  if (!outer) return true;
  if (!inner) return false;
  return std::all_of(inner->begin(), inner->end(),
                     [&](const Cidr& c) { return covered_by(c, *outer); });
}

bool denied(const IpAddr& addr, const DenyOptions& options) {
  return denied_reason(Cidr::host(addr), options).has_value();
}

}  // namespace

EffectiveRules compile(const TenantPolicy& policy, const EndpointsConfig& config) {
  EffectiveRules rules;
  for (Purpose p : kPurposes) {
    PurposeRules& out = rules.of(p);
    const bool llm_like = p != Purpose::prospecting;
    for (const Endpoint& endpoint : config.of(p)) {
      if (p == Purpose::prospecting && !policy.allow_prospecting) {
        out.decisions.push_back({endpoint.spec, false, "blocked: allow_prospecting is false"});
        continue;
      }
      if (const HostPattern* host = endpoint.entry.host()) {
        out.decisions.push_back(compile_host(policy, config, llm_like, endpoint, *host, out));
      } else {
        out.decisions.push_back(
            compile_block(policy, config, llm_like, endpoint, *endpoint.entry.cidr(), out));
      }
    }
    merge_host_rules(out.hosts);
    std::sort(out.cidrs.begin(), out.cidrs.end());
    out.cidrs.erase(std::unique(out.cidrs.begin(), out.cidrs.end()), out.cidrs.end());
  }
  return rules;
}

bool egresses(const PurposeRules& rules, const std::vector<Cidr>& internal_networks) {
  for (const CidrRule& r : rules.cidrs) {
    if (!covered_by(r.block, internal_networks)) return true;
  }
  for (const HostRule& r : rules.hosts) {
    if (!scope_covers(internal_networks, r.scope)) return true;
  }
  return false;
}

bool egresses(const EffectiveRules& rules, const std::vector<Cidr>& internal_networks) {
  return std::any_of(rules.purposes.begin(), rules.purposes.end(),
                     [&](const PurposeRules& r) { return egresses(r, internal_networks); });
}

bool name_allowed(const PurposeRules& rules, std::string_view host, std::uint16_t port) {
  return std::any_of(rules.hosts.begin(), rules.hosts.end(), [&](const HostRule& r) {
    return r.port == port && r.pattern.matches(host);
  });
}

bool pin_allowed(const PurposeRules& rules, std::string_view host, const IpAddr& addr,
                 std::uint16_t port, const DenyOptions& options, const std::vector<Cidr>& internal_bound) {
  if (denied(addr, options)) return false;
  const auto inside = [&](const std::vector<Cidr>& blocks) {
    return std::any_of(blocks.begin(), blocks.end(), [&](const Cidr& c) { return c.contains(addr); });
  };
  return std::any_of(rules.hosts.begin(), rules.hosts.end(), [&](const HostRule& r) {
    if (r.port != port || !r.pattern.matches(host)) return false;
    if (!r.scope) return true;
    return inside(*r.scope) && (!r.confined || internal_bound.empty() || inside(internal_bound));
  });
}

bool address_allowed(const PurposeRules& rules, const IpAddr& addr, std::uint16_t port,
                     const DenyOptions& options) {
  if (denied(addr, options)) return false;
  return std::any_of(rules.cidrs.begin(), rules.cidrs.end(), [&](const CidrRule& r) {
    return r.port == port && r.block.contains(addr);
  });
}

namespace {

// `block`'s address with every bit from `prefix` on cleared.
Cidr masked(const Cidr& block, unsigned prefix) {
  Cidr c{block.addr, static_cast<std::uint8_t>(prefix)};
  for (unsigned i = prefix; i < c.addr.bits(); ++i) {
    c.addr.bytes[i / 8] &= static_cast<std::uint8_t>(~(1u << (7 - i % 8)));
  }
  return c;
}

// Coverage checks by lookup, not by scanning every rule: diffs of rule
// sets with tens of thousands of entries stay O(n log n).
class Coverage {
 public:
  explicit Coverage(const PurposeRules& rules) {
    for (const HostRule& h : rules.hosts) hosts_.emplace(std::make_pair(h.pattern, h.port), &h);
    for (const CidrRule& c : rules.cidrs) {
      cidrs_.insert(c);
      prefixes(c.block.addr.family).set(c.block.prefix);
    }
  }

  // Some rule of the set matches at least r's names on r's port with at
  // least r's scope: the same pattern, or a wildcard over one of its
  // parent domains.
  [[nodiscard]] bool covers(const HostRule& r) const {
    if (covered_by_pattern(r, r.pattern)) return true;
    std::string_view rest = r.pattern.name;
    while (true) {
      const auto dot = rest.find('.');
      if (dot == std::string_view::npos) return false;
      if (covered_by_pattern(r, HostPattern{std::string(rest.substr(dot + 1)), true})) return true;
      rest = rest.substr(dot + 1);
    }
  }

  // Some rule of the set has r's port and a block containing r's: r's
  // block itself or one of its supernets.
  [[nodiscard]] bool covers(const CidrRule& r) const {
    const auto& present = prefixes(r.block.addr.family);
    for (int prefix = r.block.prefix; prefix >= 0; --prefix) {
      if (!present.test(static_cast<std::size_t>(prefix))) continue;
      if (cidrs_.contains(CidrRule{masked(r.block, static_cast<unsigned>(prefix)), r.port})) return true;
    }
    return false;
  }

 private:
  [[nodiscard]] bool covered_by_pattern(const HostRule& r, const HostPattern& pattern) const {
    auto it = hosts_.find(std::make_pair(pattern, r.port));
    if (it == hosts_.end()) return false;
    const HostRule& n = *it->second;
    return r.pattern.within(n.pattern) && scope_covers(n.scope, r.scope);
  }

  std::bitset<129>& prefixes(Family f) { return f == Family::v4 ? prefixes4_ : prefixes6_; }
  [[nodiscard]] const std::bitset<129>& prefixes(Family f) const {
    return f == Family::v4 ? prefixes4_ : prefixes6_;
  }

  std::map<std::pair<HostPattern, std::uint16_t>, const HostRule*> hosts_;
  std::set<CidrRule> cidrs_;
  // The prefix lengths present, per family: only those are looked up.
  std::bitset<129> prefixes4_, prefixes6_;
};

}  // namespace

RulesDiff diff(const EffectiveRules& before, const EffectiveRules& after) {
  RulesDiff out;
  for (Purpose p : kPurposes) {
    const PurposeRules& old_rules = before.of(p);
    const PurposeRules& new_rules = after.of(p);
    const Coverage old_cover(old_rules), new_cover(new_rules);
    PurposeDiff& d = out.purposes[static_cast<std::size_t>(p)];
    for (const HostRule& r : old_rules.hosts) {
      if (!new_cover.covers(r)) d.revoked_hosts.push_back(r);
    }
    for (const CidrRule& r : old_rules.cidrs) {
      if (!new_cover.covers(r)) d.revoked_cidrs.push_back(r);
    }
    for (const HostRule& r : new_rules.hosts) {
      if (!old_cover.covers(r)) d.granted_hosts.push_back(r);
    }
    for (const CidrRule& r : new_rules.cidrs) {
      if (!old_cover.covers(r)) d.granted_cidrs.push_back(r);
    }
  }
  return out;
}

bool RulesDiff::revokes() const {
  return std::any_of(purposes.begin(), purposes.end(),
                     [](const PurposeDiff& d) { return d.revokes(); });
}

}  // namespace sluice::policy
