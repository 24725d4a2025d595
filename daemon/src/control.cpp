#include "control.h"

#include "cgroup.h"

namespace sluice::agent {
namespace {

using Json = nlohmann::json;

tl::unexpected<RequestError> bad(std::string message) {
  return tl::unexpected(RequestError{"bad_request", std::move(message)});
}

std::optional<std::string> tenant_of(const Json& doc) {
  const auto it = doc.find("tenant");
  if (it == doc.end() || !it->is_string()) return std::nullopt;
  std::string t = it->get<std::string>();
  if (!valid_tenant_name(t)) return std::nullopt;
  return t;
}

std::optional<policy::Purpose> purpose_of(const Json& doc) {
  const auto it = doc.find("purpose");
  if (it == doc.end() || !it->is_string()) return std::nullopt;
  return policy::purpose_from_string(it->get<std::string>());
}

std::optional<std::uint64_t> u64_of(const Json& doc, const char* key) {
  const auto it = doc.find(key);
  if (it == doc.end() || !it->is_number_unsigned()) return std::nullopt;
  return it->get<std::uint64_t>();
}

bool only_keys(const Json& doc, std::initializer_list<std::string_view> keys) {
  for (const auto& [k, v] : doc.items()) {
    if (std::find(keys.begin(), keys.end(), k) == keys.end()) return false;
  }
  return true;
}

}  // namespace

Json error_reply(std::string_view code, std::string_view message) {
  return {{"ok", false}, {"code", code}, {"error", message}};
}

tl::expected<Request, RequestError> parse_request(std::string_view body,
                                                  const policy::DenyOptions& deny) {
  auto doc = policy::parse_json_strictly(body, kMaxMessage);
  if (!doc) return bad(doc.error().message);
  if (!doc->is_object()) return bad("a request must be a JSON object");
  const auto op_it = doc->find("op");
  if (op_it == doc->end() || !op_it->is_string()) return bad("missing \"op\"");
  const std::string op = op_it->get<std::string>();

  if (op == "apply") {
    if (!only_keys(*doc, {"op", "tenant", "version", "rules"})) return bad("unknown field");
    auto tenant = tenant_of(*doc);
    auto version = u64_of(*doc, "version");
    if (!tenant) return bad("tenant: 1-63 characters of a-z, 0-9, '-', '_'");
    if (!version) return bad("version: a non-negative integer");
    if (!doc->contains("rules")) return bad("rules: missing");
    auto rules = policy::rules_from_json((*doc)["rules"], deny);
    if (!rules) return bad("rules: " + rules.error().front().to_string());
    return ApplyRequest{*tenant, *version, std::move(*rules)};
  }
  if (op == "remove") {
    if (!only_keys(*doc, {"op", "tenant"})) return bad("unknown field");
    auto tenant = tenant_of(*doc);
    if (!tenant) return bad("tenant: 1-63 characters of a-z, 0-9, '-', '_'");
    return RemoveRequest{*tenant};
  }
  if (op == "resolve") {
    if (!only_keys(*doc, {"op", "tenant", "purpose", "host", "port"})) return bad("unknown field");
    auto tenant = tenant_of(*doc);
    auto purpose = purpose_of(*doc);
    auto port = u64_of(*doc, "port");
    if (!tenant) return bad("tenant: 1-63 characters of a-z, 0-9, '-', '_'");
    if (!purpose) return bad("purpose: llm, embeddings or prospecting");
    if (!port || *port == 0 || *port > 65535) return bad("port: 1 to 65535");
    const auto host_it = doc->find("host");
    if (host_it == doc->end() || !host_it->is_string()) return bad("host: missing");
    auto host = policy::canonical_hostname(host_it->get<std::string>());
    if (!host) return bad("host: " + host.error().message);
    return ResolveRequest{*tenant, *purpose, *host, static_cast<std::uint16_t>(*port)};
  }
  if (op == "socket") {
    if (!only_keys(*doc, {"op", "tenant", "purpose", "family"})) return bad("unknown field");
    auto tenant = tenant_of(*doc);
    auto purpose = purpose_of(*doc);
    auto family = u64_of(*doc, "family");
    if (!tenant) return bad("tenant: 1-63 characters of a-z, 0-9, '-', '_'");
    if (!purpose) return bad("purpose: llm, embeddings or prospecting");
    if (!family || (*family != 4 && *family != 6)) return bad("family: 4 or 6");
    return SocketRequest{*tenant, *purpose, static_cast<int>(*family)};
  }
  if (op == "status") {
    if (!only_keys(*doc, {"op"})) return bad("unknown field");
    return StatusRequest{};
  }
  if (op == "events") {
    if (!only_keys(*doc, {"op", "cursor", "max"})) return bad("unknown field");
    EventsRequest r;
    if (doc->contains("cursor")) {
      auto c = u64_of(*doc, "cursor");
      if (!c) return bad("cursor: a non-negative integer");
      r.cursor = *c;
    }
    if (doc->contains("max")) {
      auto m = u64_of(*doc, "max");
      if (!m || *m == 0 || *m > 1000) return bad("max: 1 to 1000");
      r.max = static_cast<std::size_t>(*m);
    }
    return r;
  }
  return bad("unknown op");
}

}  // namespace sluice::agent
