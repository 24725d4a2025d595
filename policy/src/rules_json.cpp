// EffectiveRules <-> JSON: the form mcpd sends to sluice-agent and
// `sluicectl policy explain --json` prints. Parsing is as strict as for
// policies: the agent must never enforce something it half understood.
#include <algorithm>

#include "json_fields.h"
#include "sluice/policy/rules.h"

namespace sluice::policy {
namespace {

using Json = nlohmann::json;

constexpr std::size_t kMaxRulesPerPurpose = 65536;

Json host_json(const HostRule& r) {
  Json j = {{"pattern", r.pattern.to_string()}, {"port", r.port}, {"scope", nullptr}};
  if (r.scope) {
    auto& s = j["scope"] = Json::array();
    for (const Cidr& c : *r.scope) s.push_back(c.to_string());
  }
  if (r.confined) j["confined"] = true;
  return j;
}

Json cidr_json(const CidrRule& r) { return {{"block", r.block.to_string()}, {"port", r.port}}; }

std::optional<std::uint16_t> read_port(const Json& obj, const std::string& path,
                                       ErrorSink& errors) {
  const auto it = obj.find("port");
  if (it == obj.end()) {
    errors.add(Error{ErrorCode::missing_field, path + ".port", "required field missing"});
    return std::nullopt;
  }
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() == 0 ||
      it->get<std::uint64_t>() > 65535) {
    errors.add(Error{ErrorCode::bad_port, path + ".port", "expected an integer from 1 to 65535"});
    return std::nullopt;
  }
  return static_cast<std::uint16_t>(it->get<std::uint64_t>());
}

std::optional<std::string> read_string(const Json& obj, std::string_view key,
                                       const std::string& path, ErrorSink& errors) {
  const auto it = obj.find(key);
  if (it == obj.end()) {
    errors.add(Error{ErrorCode::missing_field, detail::join_path(path, key),
                     "required field missing"});
    return std::nullopt;
  }
  if (!it->is_string()) {
    errors.add(Error{ErrorCode::wrong_type, detail::join_path(path, key),
                     "expected a string, got " + std::string(detail::type_name(*it))});
    return std::nullopt;
  }
  return it->get<std::string>();
}

// Runs `each(path, element)` over object[key] when it is an array of objects.
template <class Each>
void for_each_object(const Json& obj, std::string_view key, const std::string& prefix,
                     ErrorSink& errors, Each&& each) {
  const auto it = obj.find(key);
  const std::string path = detail::join_path(prefix, key);
  if (it == obj.end()) {
    errors.add(Error{ErrorCode::missing_field, path, "required field missing"});
    return;
  }
  if (!it->is_array()) {
    errors.add(Error{ErrorCode::wrong_type, path, "expected an array"});
    return;
  }
  if (it->size() > kMaxRulesPerPurpose) {
    errors.add(Error{ErrorCode::too_many, path, "too many rules"});
    return;
  }
  for (std::size_t i = 0; i < it->size(); ++i) {
    const std::string element_path = path + "[" + std::to_string(i) + "]";
    if (!(*it)[i].is_object()) {
      errors.add(Error{ErrorCode::wrong_type, element_path, "expected an object"});
      continue;
    }
    each(element_path, (*it)[i]);
  }
}

void read_purpose(const Json& obj, const std::string& path, const DenyOptions& options,
                  PurposeRules& out, ErrorSink& errors) {
  detail::check_known_fields(obj, {"hosts", "cidrs", "decisions"}, path, errors);
  for_each_object(obj, "hosts", path, errors, [&](const std::string& p, const Json& h) {
    detail::check_known_fields(h, {"pattern", "port", "scope", "confined"}, p, errors);
    HostRule rule;
    bool ok = true;
    if (auto text = read_string(h, "pattern", p, errors)) {
      auto pattern = parse_host_pattern(*text);
      if (pattern) {
        rule.pattern = std::move(*pattern);
      } else {
        errors.add(pattern.error().at(p + ".pattern"));
        ok = false;
      }
    } else {
      ok = false;
    }
    auto port = read_port(h, p, errors);
    ok = ok && port.has_value();
    if (port) rule.port = *port;
    std::vector<Cidr> scope;
    const bool scoped = detail::for_each_string(
        h, "scope", p, kMaxRulesPerPurpose, errors, [&](const std::string& sp, const std::string& t) {
          auto block = parse_allowed_block(t, t, options);
          if (block) {
            scope.push_back(*block);
          } else {
            errors.add(block.error().at(sp));
            ok = false;
          }
        });
    if (scoped) {
      if (scope.empty()) {
        errors.add(Error{ErrorCode::empty, p + ".scope",
                         "an empty scope allows nothing; omit the rule instead"});
        ok = false;
      }
      rule.scope = normalize(std::move(scope));
    }
    if (const auto it = h.find("confined"); it != h.end()) {
      if (!it->is_boolean()) {
        errors.add(Error{ErrorCode::wrong_type, p + ".confined", "expected true or false"});
        ok = false;
      } else {
        rule.confined = it->get<bool>();
        if (rule.confined && !rule.scope) {
          errors.add(Error{ErrorCode::bad_value, p + ".confined", "a confined rule needs a scope"});
          ok = false;
        }
      }
    }
    if (ok) out.hosts.push_back(std::move(rule));
  });
  for_each_object(obj, "cidrs", path, errors, [&](const std::string& p, const Json& c) {
    detail::check_known_fields(c, {"block", "port"}, p, errors);
    auto text = read_string(c, "block", p, errors);
    auto port = read_port(c, p, errors);
    if (!text || !port) return;
    auto block = parse_allowed_block(*text, *text, options);
    if (!block) {
      errors.add(block.error().at(p + ".block"));
      return;
    }
    out.cidrs.push_back(CidrRule{*block, *port});
  });
  if (obj.contains("decisions")) {
    for_each_object(obj, "decisions", path, errors, [&](const std::string& p, const Json& d) {
      detail::check_known_fields(d, {"endpoint", "allowed", "reason"}, p, errors);
      Decision decision;
      if (auto e = read_string(d, "endpoint", p, errors)) decision.endpoint = *e;
      if (auto r = read_string(d, "reason", p, errors)) decision.reason = *r;
      decision.allowed = detail::read_required_bool(d, "allowed", p, errors);
      out.decisions.push_back(std::move(decision));
    });
  }
  std::sort(out.hosts.begin(), out.hosts.end());
  out.hosts.erase(std::unique(out.hosts.begin(), out.hosts.end()), out.hosts.end());
  std::sort(out.cidrs.begin(), out.cidrs.end());
  out.cidrs.erase(std::unique(out.cidrs.begin(), out.cidrs.end()), out.cidrs.end());
}

}  // namespace

Json to_json(const EffectiveRules& rules) {
  Json out = Json::object();
  for (Purpose p : kPurposes) {
    const PurposeRules& r = rules.of(p);
    Json hosts = Json::array(), cidrs = Json::array(), decisions = Json::array();
    for (const HostRule& h : r.hosts) hosts.push_back(host_json(h));
    for (const CidrRule& c : r.cidrs) cidrs.push_back(cidr_json(c));
    for (const Decision& d : r.decisions) {
      decisions.push_back({{"endpoint", d.endpoint}, {"allowed", d.allowed}, {"reason", d.reason}});
    }
    out[std::string(to_string(p))] = {{"hosts", hosts}, {"cidrs", cidrs}, {"decisions", decisions}};
  }
  return out;
}

Json to_json(const RulesDiff& diff) {
  Json out = Json::object();
  for (Purpose p : kPurposes) {
    const PurposeDiff& d = diff.of(p);
    Json j = {{"revoked_hosts", Json::array()}, {"revoked_cidrs", Json::array()},
              {"granted_hosts", Json::array()}, {"granted_cidrs", Json::array()}};
    for (const HostRule& h : d.revoked_hosts) j["revoked_hosts"].push_back(host_json(h));
    for (const CidrRule& c : d.revoked_cidrs) j["revoked_cidrs"].push_back(cidr_json(c));
    for (const HostRule& h : d.granted_hosts) j["granted_hosts"].push_back(host_json(h));
    for (const CidrRule& c : d.granted_cidrs) j["granted_cidrs"].push_back(cidr_json(c));
    out[std::string(to_string(p))] = std::move(j);
  }
  return out;
}

Results<EffectiveRules> rules_from_json(const Json& doc, const DenyOptions& options) {
  ErrorSink errors;
  if (!doc.is_object()) {
    errors.add(Error{ErrorCode::wrong_type, "", "rules must be a JSON object"});
    return tl::unexpected(errors.take());
  }
  detail::check_known_fields(doc, {"llm", "embeddings", "prospecting"}, "", errors);
  EffectiveRules rules;
  for (Purpose p : kPurposes) {
    const std::string key(to_string(p));
    const auto it = doc.find(key);
    if (it == doc.end()) {
      errors.add(Error{ErrorCode::missing_field, key, "required field missing"});
      continue;
    }
    if (!it->is_object()) {
      errors.add(Error{ErrorCode::wrong_type, key, "expected an object"});
      continue;
    }
    read_purpose(*it, key, options, rules.of(p), errors);
  }
  if (!errors.empty()) return tl::unexpected(errors.take());
  return rules;
}

}  // namespace sluice::policy
