// What the operator configured: the endpoints each purpose talks to and the
// networks that count as inside the organisation.
//
//   { "internal_networks": ["10.0.0.0/8", "fd00::/8"],
//     "internal_domains": ["*.corp.example"],
//     "endpoints": {
//       "llm": ["https://api.anthropic.com", "http://ollama.corp.example:11434"],
//       "embeddings": ["10.20.1.5:8080"],
//       "prospecting": ["https://api.apollo.io"] } }
//
// An endpoint is a URL (http/https, port defaulting to 80/443, any path
// ignored) or an entry with a mandatory port ("host:port", "[v6]:port",
// "10.0.0.0/24:443"). Names under internal_domains are taken to be
// internal: they may only ever be pinned to internal_networks addresses.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "sluice/policy/entry.h"

namespace sluice::policy {

enum class Purpose : std::uint8_t { llm = 0, embeddings = 1, prospecting = 2 };
inline constexpr std::array<Purpose, 3> kPurposes = {Purpose::llm, Purpose::embeddings,
                                                     Purpose::prospecting};
std::string_view to_string(Purpose purpose);
std::optional<Purpose> purpose_from_string(std::string_view text);

inline constexpr std::size_t kMaxEndpointsPerPurpose = 256;
inline constexpr std::size_t kMaxInternalNetworks = 1024;

struct Endpoint {
  std::string spec;  // the configured text, canonicalised: "https://api.anthropic.com:443"
  Entry entry;       // entry.port is always set

  [[nodiscard]] std::uint16_t port() const { return *entry.port; }
  bool operator==(const Endpoint&) const = default;
};

struct EndpointsConfig {
  std::vector<Cidr> internal_networks;      // normalised
  std::vector<HostPattern> internal_domains;
  std::array<std::vector<Endpoint>, 3> endpoints;  // indexed by Purpose

  [[nodiscard]] const std::vector<Endpoint>& of(Purpose p) const {
    return endpoints[static_cast<std::size_t>(p)];
  }
  // True when `host` (canonical) falls under internal_domains.
  [[nodiscard]] bool is_internal_name(const HostPattern& host) const;
  bool operator==(const EndpointsConfig&) const = default;
};

Result<Endpoint> parse_endpoint(std::string_view text, const DenyOptions& options);

Results<EndpointsConfig> parse_endpoints(std::string_view json_text,
                                         const DenyOptions& options = {});
Results<EndpointsConfig> endpoints_from_json(const nlohmann::json& doc,
                                             const DenyOptions& options = {});
nlohmann::json to_json(const EndpointsConfig& config);

}  // namespace sluice::policy
