// The control protocol's request parser: every op parses into its typed
// request, and every malformed request is refused as a bad_request with a
// message saying what was wrong.
#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../policy/test_support.h"
#include "control.h"

using namespace sluice::agent;
using namespace sluice::policy;
using Catch::Matchers::Contains;
using Json = nlohmann::json;

namespace {

constexpr char kEndpoints[] = R"({
  "internal_networks": ["10.0.0.0/8"],
  "internal_domains": ["*.corp.example"],
  "endpoints": {
    "llm": ["https://api.anthropic.com", "http://ollama.corp.example:11434",
            "http://10.1.2.3:8000"],
    "embeddings": ["https://api.openai.com"],
    "prospecting": ["https://api.apollo.io"]}})";

EffectiveRules sample_rules() {
  return compile(testing::policy_of(R"({"allow_llm_egress": true, "allow_prospecting": false,
                                        "discovery_samples": false})"),
                 testing::config_of(kEndpoints));
}

template <class T>
T parsed(const Json& request) {
  auto r = parse_request(request.dump(), DenyOptions{});
  if (!r) FAIL("request refused: " << r.error().message);
  if (!std::holds_alternative<T>(*r)) FAIL("request parsed as another op: " << request.dump());
  return std::get<T>(*r);
}

struct Malformed {
  std::string what;
  std::string body;
  std::string fragment;
};

std::string apply_with(const Json& rules) {
  return Json{{"op", "apply"}, {"tenant", "acme"}, {"version", 1}, {"rules", rules}}.dump();
}

std::string nested(int depth) {
  return R"({"op":"status","x":)" + std::string(depth, '[') + std::string(depth, ']') + "}";
}

std::vector<Malformed> malformed() {
  const std::string rules = to_json(sample_rules()).dump();
  Json denied = to_json(sample_rules());
  denied["llm"]["cidrs"].push_back({{"block", "169.254.0.0/16"}, {"port", 80}});
  Json missing_purpose = to_json(sample_rules());
  missing_purpose.erase("prospecting");

  return {
      // The envelope.
      {"text that is not JSON", "op=status", "invalid JSON"},
      {"an empty body", "", "invalid JSON"},
      {"two documents", R"({"op":"status"}{"op":"status"})", "invalid JSON"},
      {"an array", R"([{"op":"status"}])", "a request must be a JSON object"},
      {"a string", R"("status")", "a request must be a JSON object"},
      {"an object without op", R"({"tenant":"acme"})", "missing \"op\""},
      {"op as a number", R"({"op":1})", "missing \"op\""},
      {"op as null", R"({"op":null})", "missing \"op\""},
      {"an unknown op", R"({"op":"reboot"})", "unknown op"},
      {"an op in the wrong case", R"({"op":"Status"})", "unknown op"},
      {"a duplicate key", R"({"op":"remove","tenant":"acme","tenant":"other"})",
       "duplicate key \"tenant\""},
      {"nesting beyond the bound", nested(40), "nested deeper than"},
      {"a body over the size bound", R"({"op":"status"})" + std::string(kMaxMessage, ' '),
       "larger than"},

      // Fields no op reads.
      {"status with a field", R"({"op":"status","verbose":true})", "unknown field"},
      {"remove with a version", R"({"op":"remove","tenant":"acme","version":1})", "unknown field"},
      {"apply with a purpose",
       R"({"op":"apply","tenant":"acme","version":1,"purpose":"llm","rules":)" + rules + "}",
       "unknown field"},
      {"resolve with a family",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com","port":443,"family":4})",
       "unknown field"},
      {"socket with a host",
       R"({"op":"socket","tenant":"acme","purpose":"llm","family":4,"host":"a.example.com"})",
       "unknown field"},
      {"events with a tenant", R"({"op":"events","tenant":"acme"})", "unknown field"},

      // Tenant names become cgroup path components and nft strings.
      {"a tenant with a slash", R"({"op":"remove","tenant":"acme/llm"})", "tenant:"},
      {"a tenant of '..'", R"({"op":"remove","tenant":".."})", "tenant:"},
      {"a tenant with dots", R"({"op":"remove","tenant":"acme.corp"})", "tenant:"},
      {"an uppercase tenant", R"({"op":"remove","tenant":"Acme"})", "tenant:"},
      {"a tenant of 64 characters", R"({"op":"remove","tenant":")" + std::string(64, 'a') + "\"}",
       "tenant:"},
      {"an empty tenant", R"({"op":"remove","tenant":""})", "tenant:"},
      {"a tenant starting with '-'", R"({"op":"remove","tenant":"-acme"})", "tenant:"},
      {"a tenant with a double quote", R"({"op":"remove","tenant":"a\"b"})", "tenant:"},
      {"a tenant as a number", R"({"op":"remove","tenant":7})", "tenant:"},
      {"a missing tenant", R"({"op":"remove"})", "tenant:"},
      {"a bad tenant on socket", R"({"op":"socket","tenant":"a b","purpose":"llm","family":4})",
       "tenant:"},

      // apply.
      {"a negative version", R"({"op":"apply","tenant":"acme","version":-1,"rules":)" + rules + "}",
       "version: a non-negative integer"},
      {"a version as a string",
       R"({"op":"apply","tenant":"acme","version":"1","rules":)" + rules + "}", "version:"},
      {"a fractional version",
       R"({"op":"apply","tenant":"acme","version":1.5,"rules":)" + rules + "}", "version:"},
      {"a missing version", R"({"op":"apply","tenant":"acme","rules":)" + rules + "}", "version:"},
      {"missing rules", R"({"op":"apply","tenant":"acme","version":1})", "rules: missing"},
      {"rules as an array", apply_with(Json::array()), "rules:"},
      {"rules opening an always-denied block", apply_with(denied),
       "always-denied range (link-local"},
      {"rules missing a purpose", apply_with(missing_purpose), "rules: prospecting"},

      // resolve.
      {"port 0",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com","port":0})",
       "port: 1 to 65535"},
      {"port 70000",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com","port":70000})",
       "port: 1 to 65535"},
      {"a negative port",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com","port":-443})",
       "port: 1 to 65535"},
      {"a port as a string",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com","port":"443"})",
       "port: 1 to 65535"},
      {"a missing port",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a.example.com"})",
       "port: 1 to 65535"},
      {"a host with an underscore",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"bad_host.example.com","port":443})",
       "host: invalid character"},
      {"a wildcard host",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"*.example.com","port":443})",
       "host:"},
      {"an empty host", R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"","port":443})",
       "host: empty host name"},
      {"a host as a number",
       R"({"op":"resolve","tenant":"acme","purpose":"llm","host":1,"port":443})", "host: missing"},
      {"a missing host", R"({"op":"resolve","tenant":"acme","purpose":"llm","port":443})",
       "host: missing"},
      {"an unknown purpose",
       R"({"op":"resolve","tenant":"acme","purpose":"marketing","host":"a.example.com","port":443})",
       "purpose: llm, embeddings or prospecting"},
      {"a missing purpose", R"({"op":"resolve","tenant":"acme","host":"a.example.com","port":443})",
       "purpose:"},

      // socket.
      {"family 5", R"({"op":"socket","tenant":"acme","purpose":"llm","family":5})",
       "family: 4 or 6"},
      {"family as a string", R"({"op":"socket","tenant":"acme","purpose":"llm","family":"4"})",
       "family: 4 or 6"},
      {"a missing family", R"({"op":"socket","tenant":"acme","purpose":"llm"})", "family: 4 or 6"},
      {"an unknown purpose on socket",
       R"({"op":"socket","tenant":"acme","purpose":"LLM","family":4})", "purpose:"},

      // events.
      {"max 0", R"({"op":"events","max":0})", "max: 1 to 1000"},
      {"max 1001", R"({"op":"events","max":1001})", "max: 1 to 1000"},
      {"max as a string", R"({"op":"events","max":"10"})", "max: 1 to 1000"},
      {"a negative cursor", R"({"op":"events","cursor":-1})", "cursor: a non-negative integer"},
      {"a null cursor", R"({"op":"events","cursor":null})", "cursor:"},
  };
}

}  // namespace

TEST_CASE("agent::parse_request reads every op", "[agent][control]") {
  SECTION("apply carries the tenant, version and the rules as compiled") {
    const EffectiveRules rules = sample_rules();
    const auto r = parsed<ApplyRequest>(
        {{"op", "apply"}, {"tenant", "acme"}, {"version", 17}, {"rules", to_json(rules)}});
    CHECK(r.tenant == "acme");
    CHECK(r.version == 17);
    CHECK(r.rules == rules);
    CHECK_FALSE(r.rules.of(Purpose::llm).empty());
  }
  SECTION("apply accepts version 0 and the largest 64-bit version") {
    const Json rules = to_json(sample_rules());
    CHECK(parsed<ApplyRequest>({{"op", "apply"}, {"tenant", "a"}, {"version", 0}, {"rules", rules}})
              .version == 0);
    CHECK(parsed<ApplyRequest>(
              {{"op", "apply"}, {"tenant", "a"}, {"version", UINT64_MAX}, {"rules", rules}})
              .version == UINT64_MAX);
  }
  SECTION("remove carries the tenant") {
    CHECK(parsed<RemoveRequest>({{"op", "remove"}, {"tenant", "acme_2-x"}}).tenant == "acme_2-x");
  }
  SECTION("resolve canonicalises the host") {
    const auto r = parsed<ResolveRequest>({{"op", "resolve"},
                                           {"tenant", "acme"},
                                           {"purpose", "embeddings"},
                                           {"host", "API.Example.COM."},
                                           {"port", 8443}});
    CHECK(r.tenant == "acme");
    CHECK(r.purpose == Purpose::embeddings);
    CHECK(r.host == "api.example.com");
    CHECK(r.port == 8443);
  }
  SECTION("resolve accepts ports 1 and 65535") {
    for (int port : {1, 65535}) {
      const auto r = parsed<ResolveRequest>({{"op", "resolve"},
                                             {"tenant", "acme"},
                                             {"purpose", "prospecting"},
                                             {"host", "a.example.com"},
                                             {"port", port}});
      CHECK(r.port == port);
      CHECK(r.purpose == Purpose::prospecting);
    }
  }
  SECTION("socket carries the family, 4 or 6") {
    const auto v4 = parsed<SocketRequest>(
        {{"op", "socket"}, {"tenant", "acme"}, {"purpose", "llm"}, {"family", 4}});
    CHECK(v4.tenant == "acme");
    CHECK(v4.purpose == Purpose::llm);
    CHECK(v4.family == 4);
    const auto v6 = parsed<SocketRequest>(
        {{"op", "socket"}, {"tenant", "acme"}, {"purpose", "embeddings"}, {"family", 6}});
    CHECK(v6.family == 6);
    CHECK(v6.purpose == Purpose::embeddings);
  }
  SECTION("status takes nothing") {
    auto r = parse_request(R"({"op":"status"})", DenyOptions{});
    REQUIRE(r);
    CHECK(std::holds_alternative<StatusRequest>(*r));
  }
  SECTION("events defaults to cursor 0 and at most 100") {
    const auto r = parsed<EventsRequest>({{"op", "events"}});
    CHECK(r.cursor == 0);
    CHECK(r.max == 100);
  }
  SECTION("events takes a cursor and a max up to 1000") {
    const auto r = parsed<EventsRequest>({{"op", "events"}, {"cursor", 12345}, {"max", 1000}});
    CHECK(r.cursor == 12345);
    CHECK(r.max == 1000);
    CHECK(parsed<EventsRequest>({{"op", "events"}, {"max", 1}}).max == 1);
  }
  SECTION("field order does not matter") {
    auto r = parse_request(
        R"({"port":443,"host":"a.example.com","purpose":"llm","tenant":"t","op":"resolve"})",
        DenyOptions{});
    REQUIRE(r);
    CHECK(std::get<ResolveRequest>(*r).host == "a.example.com");
  }
}

TEST_CASE("agent::parse_request checks rules against the agent's deny options",
          "[agent][control]") {
  Json rules = to_json(sample_rules());
  rules["llm"]["cidrs"].push_back({{"block", "127.0.0.1"}, {"port", 8080}});
  const std::string body = apply_with(rules);

  SECTION("loopback is refused by default") {
    auto r = parse_request(body, DenyOptions{});
    REQUIRE_FALSE(r);
    CHECK(r.error().code == "bad_request");
    CHECK_THAT(r.error().message, Contains("loopback"));
  }
  SECTION("loopback is accepted when the agent allows it") {
    auto r = parse_request(body, DenyOptions{.allow_loopback = true});
    REQUIRE(r);
    CHECK(std::get<ApplyRequest>(*r).rules.of(Purpose::llm).cidrs.size() == 2);
  }
}

TEST_CASE("agent::parse_request refuses each malformed request as a bad_request",
          "[agent][control]") {
  const std::vector<Malformed> rows = malformed();
  REQUIRE(rows.size() >= 20);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Malformed& row = rows[i];
    DYNAMIC_SECTION("#" << i << ": " << row.what) {
      auto r = parse_request(row.body, DenyOptions{});
      REQUIRE_FALSE(r);
      CHECK(r.error().code == "bad_request");
      CHECK_THAT(r.error().message, Contains(row.fragment));
    }
  }
}

TEST_CASE("agent::parse_request quotes at most a bounded part of the input", "[agent][control]") {
  const std::string huge(100000, 'x');
  const std::vector<std::string> bodies = {
      R"({"op":"resolve","tenant":"acme","purpose":"llm","host":")" + huge + R"(","port":443})",
      R"({"op":"resolve","tenant":"acme","purpose":"llm","host":"a_)" + huge +
          R"(.com","port":443})",
      R"({"op":")" + huge + R"("})",
      R"({"op":"remove","tenant":")" + huge + R"("})",
      R"({"op":"status",")" + huge + R"(":1})",
      R"({"op":"status","op":")" + huge + R"("})",
      R"({"op":"status",)" + huge,
  };
  for (std::size_t i = 0; i < bodies.size(); ++i) {
    DYNAMIC_SECTION("body #" << i) {
      auto r = parse_request(bodies[i], DenyOptions{});
      REQUIRE_FALSE(r);
      CHECK(r.error().code == "bad_request");
      CHECK(r.error().message.size() < 300);
    }
  }
}

TEST_CASE("agent::error_reply has the documented shape", "[agent][control]") {
  const Json reply = error_reply("bad_request", "unknown op");
  CHECK(reply == Json{{"ok", false}, {"code", "bad_request"}, {"error", "unknown op"}});
}
