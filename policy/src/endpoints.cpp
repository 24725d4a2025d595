#include "sluice/policy/endpoints.h"

#include <algorithm>

#include "json_fields.h"
#include "sluice/policy/policy.h"

namespace sluice::policy {
namespace {

constexpr std::size_t kMaxUrlLength = 2048;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

Result<Endpoint> parse_url(std::string_view text, std::string_view scheme,
                           const DenyOptions& options) {
  const std::uint16_t default_port = scheme == "https" ? 443 : 80;
  std::string_view rest = text.substr(scheme.size() + 3);
  const std::string_view authority = rest.substr(0, rest.find_first_of("/?#"));
  if (authority.empty()) return fail(ErrorCode::bad_url, "URL without a host: " + quote(text));
  if (authority.find('@') != std::string_view::npos) {
    return fail(ErrorCode::bad_url, "credentials in an endpoint URL are not allowed");
  }
  auto entry = parse_entry(authority, options);
  if (!entry) return tl::unexpected(entry.error());
  if (entry->host() && entry->host()->wildcard) {
    return fail(ErrorCode::bad_url,
                "a URL names one host; write a pattern as \"*.domain:port\": " + quote(text));
  }
  // The authority ends at the first '/', so a URL can never carry a block.
  const bool explicit_port = entry->port.has_value();
  if (!explicit_port) entry->port = default_port;
  Entry shown = *entry;
  if (!explicit_port || *entry->port == default_port) shown.port.reset();
  return Endpoint{std::string(scheme) + "://" + shown.to_string(), std::move(*entry)};
}

}  // namespace

std::string_view to_string(Purpose purpose) {
  switch (purpose) {
    case Purpose::llm: return "llm";
    case Purpose::embeddings: return "embeddings";
    case Purpose::prospecting: return "prospecting";
  }
  return "unknown";
}

std::optional<Purpose> purpose_from_string(std::string_view text) {
  for (Purpose p : kPurposes) {
    if (to_string(p) == text) return p;
  }
  return std::nullopt;
}

bool EndpointsConfig::is_internal_name(const HostPattern& host) const {
  return std::any_of(internal_domains.begin(), internal_domains.end(),
                     [&](const HostPattern& d) { return host.within(d); });
}

Result<Endpoint> parse_endpoint(std::string_view text, const DenyOptions& options) {
  if (text.size() > kMaxUrlLength) {
    return fail(ErrorCode::too_large, "endpoint longer than " + std::to_string(kMaxUrlLength) +
                                          " characters");
  }
  if (const auto sep = text.find("://"); sep != std::string_view::npos) {
    const std::string scheme = lower(text.substr(0, sep));
    if (scheme != "http" && scheme != "https") {
      return fail(ErrorCode::bad_url, "only http and https endpoint URLs are supported: " +
                                          quote(text));
    }
    std::string normalised = scheme + std::string(text.substr(sep));
    return parse_url(normalised, scheme, options);
  }
  auto entry = parse_entry(text, options);
  if (!entry) return tl::unexpected(entry.error());
  if (!entry->port) {
    return fail(ErrorCode::bad_port,
                "an endpoint needs a port (\"host:443\") or a URL (\"https://host\"): " +
                    quote(text));
  }
  return Endpoint{entry->to_string(), std::move(*entry)};
}

Results<EndpointsConfig> endpoints_from_json(const nlohmann::json& doc,
                                             const DenyOptions& options) {
  ErrorSink errors;
  if (!doc.is_object()) {
    errors.add(Error{ErrorCode::wrong_type, "",
                     "the endpoints configuration must be an object, got " +
                         std::string(detail::type_name(doc))});
    return tl::unexpected(errors.take());
  }
  detail::check_known_fields(doc, {"internal_networks", "internal_domains", "endpoints"}, "",
                             errors);
  EndpointsConfig config;

  detail::for_each_string(doc, "internal_networks", "", kMaxInternalNetworks, errors,
                          [&](const std::string& path, const std::string& text) {
                            auto block = parse_cidr(text);
                            if (!block) {
                              errors.add(block.error().at(path));
                            } else {
                              config.internal_networks.push_back(*block);
                            }
                          });
  config.internal_networks = normalize(std::move(config.internal_networks));

  detail::for_each_string(doc, "internal_domains", "", kMaxInternalNetworks, errors,
                          [&](const std::string& path, const std::string& text) {
                            auto pattern = parse_host_pattern(text);
                            if (!pattern) {
                              errors.add(pattern.error().at(path));
                            } else {
                              config.internal_domains.push_back(std::move(*pattern));
                            }
                          });
  std::sort(config.internal_domains.begin(), config.internal_domains.end());
  config.internal_domains.erase(
      std::unique(config.internal_domains.begin(), config.internal_domains.end()),
      config.internal_domains.end());

  if (const auto it = doc.find("endpoints"); it != doc.end() && !it->is_null()) {
    if (!it->is_object()) {
      errors.add(Error{ErrorCode::wrong_type, "endpoints",
                       "expected an object with llm, embeddings and prospecting lists"});
    } else {
      detail::check_known_fields(*it, {"llm", "embeddings", "prospecting"}, "endpoints", errors);
      for (Purpose p : kPurposes) {
        auto& list = config.endpoints[static_cast<std::size_t>(p)];
        detail::for_each_string(*it, to_string(p), "endpoints", kMaxEndpointsPerPurpose, errors,
                                [&](const std::string& path, const std::string& text) {
                                  auto endpoint = parse_endpoint(text, options);
                                  if (!endpoint) {
                                    errors.add(endpoint.error().at(path));
                                  } else if (std::find(list.begin(), list.end(), *endpoint) ==
                                             list.end()) {
                                    list.push_back(std::move(*endpoint));
                                  }
                                });
      }
    }
  }
  if (!errors.empty()) return tl::unexpected(errors.take());
  return config;
}

Results<EndpointsConfig> parse_endpoints(std::string_view json_text, const DenyOptions& options) {
  auto doc = parse_json_strictly(json_text, kMaxPolicyBytes, kMaxPolicyValues);
  if (!doc) return tl::unexpected(std::vector<Error>{doc.error()});
  return endpoints_from_json(*doc, options);
}

nlohmann::json to_json(const EndpointsConfig& config) {
  nlohmann::json out;
  auto& networks = out["internal_networks"] = nlohmann::json::array();
  for (const Cidr& c : config.internal_networks) networks.push_back(c.to_string());
  auto& domains = out["internal_domains"] = nlohmann::json::array();
  for (const HostPattern& d : config.internal_domains) domains.push_back(d.to_string());
  auto& endpoints = out["endpoints"] = nlohmann::json::object();
  for (Purpose p : kPurposes) {
    auto& list = endpoints[std::string(to_string(p))] = nlohmann::json::array();
    for (const Endpoint& e : config.of(p)) list.push_back(e.spec);
  }
  return out;
}

}  // namespace sluice::policy
