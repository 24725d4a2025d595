// The control protocol: a Unix stream socket; each message is a 4-byte
// big-endian length and that many bytes of JSON. Requests are bounded and
// validated here; the server only does I/O.
//
//   {"op":"apply","tenant":T,"version":N,"rules":{...}}   -> {"ok":true,"generation":G,"destroyed":K}
//   {"op":"remove","tenant":T}                             -> {"ok":true,"generation":G}
//   {"op":"resolve","tenant":T,"purpose":P,"host":H,"port":N} -> {"ok":true,"addresses":[...],"ttl":S}
//   {"op":"socket","tenant":T,"purpose":P,"family":4|6}    -> {"ok":true} + one fd (SCM_RIGHTS)
//   {"op":"status"}                                        -> {"ok":true,...}
//   {"op":"events","cursor":N,"max":M}                     -> {"ok":true,"events":[...],"cursor":C}
// Errors: {"ok":false,"code":"bad_request|forbidden|not_allowed|failed","error":"..."}
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include <nlohmann/json.hpp>

#include "sluice/policy/rules.h"

namespace sluice::agent {

inline constexpr std::size_t kMaxMessage = 16 * 1024 * 1024;

struct ApplyRequest {
  std::string tenant;
  std::uint64_t version = 0;
  policy::EffectiveRules rules;
};
struct RemoveRequest {
  std::string tenant;
};
struct ResolveRequest {
  std::string tenant;
  policy::Purpose purpose = policy::Purpose::llm;
  std::string host;  // canonical
  std::uint16_t port = 0;
};
struct SocketRequest {
  std::string tenant;
  policy::Purpose purpose = policy::Purpose::llm;
  int family = 4;
};
struct StatusRequest {};
struct EventsRequest {
  std::uint64_t cursor = 0;
  std::size_t max = 100;
};

using Request = std::variant<ApplyRequest, RemoveRequest, ResolveRequest, SocketRequest,
                             StatusRequest, EventsRequest>;

struct RequestError {
  std::string code;     // bad_request
  std::string message;  // never echoes more than a bounded quote of input
};

// Parses and validates one request body.
tl::expected<Request, RequestError> parse_request(std::string_view body,
                                                  const policy::DenyOptions& deny);

nlohmann::json error_reply(std::string_view code, std::string_view message);

}  // namespace sluice::agent
