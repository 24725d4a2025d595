#include "test_support.h"

using namespace sluice::policy;
using namespace sluice::policy::testing;

namespace {

constexpr char kConfig[] = R"({
  "internal_networks": ["10.0.0.0/8", "fd00::/8"],
  "internal_domains": ["*.corp.example"],
  "endpoints": {
    "llm": ["https://api.anthropic.com", "http://ollama.corp.example:11434",
            "http://10.1.2.3:8000", "https://203.0.113.7"],
    "embeddings": ["https://api.openai.com", "10.9.0.0/16:8080"],
    "prospecting": ["https://api.apollo.io", "*.clearbit.com:443"]}})";

EffectiveRules compile_with(std::string_view policy_json) {
  return compile(policy_of(policy_json), config_of(kConfig));
}

std::string policy_json(bool llm, bool prospecting, const char* allowlist = "null") {
  return std::string("{\"allow_llm_egress\":") + (llm ? "true" : "false") +
         ",\"allow_prospecting\":" + (prospecting ? "true" : "false") +
         ",\"discovery_samples\":false,\"egress_allowlist\":" + allowlist + "}";
}

const HostRule* find_host(const PurposeRules& r, std::string_view pattern, std::uint16_t port) {
  for (const HostRule& h : r.hosts) {
    if (h.pattern.to_string() == pattern && h.port == port) return &h;
  }
  return nullptr;
}

bool has_cidr(const PurposeRules& r, std::string_view block, std::uint16_t port) {
  for (const CidrRule& c : r.cidrs) {
    if (c.block.to_string() == block && c.port == port) return true;
  }
  return false;
}

const Decision& decision_for(const PurposeRules& r, std::string_view endpoint) {
  for (const Decision& d : r.decisions) {
    if (d.endpoint == endpoint) return d;
  }
  FAIL("no decision for " << endpoint);
  static Decision none;
  return none;
}

const std::vector<Cidr> kInternal = {cidr("10.0.0.0/8"), cidr("fd00::/8")};

}  // namespace

TEST_CASE("policy::compile without an allowlist allows the configured endpoints",
          "[policy][compile]") {
  const EffectiveRules rules = compile_with(policy_json(true, true));
  const PurposeRules& llm = rules.of(Purpose::llm);

  SECTION("external names are unrestricted") {
    const HostRule* r = find_host(llm, "api.anthropic.com", 443);
    REQUIRE(r);
    CHECK_FALSE(r->scope);
  }
  SECTION("names under internal_domains may only resolve into internal networks") {
    const HostRule* r = find_host(llm, "ollama.corp.example", 11434);
    REQUIRE(r);
    REQUIRE(r->scope);
    CHECK(*r->scope == kInternal);
  }
  SECTION("address endpoints become static blocks with the endpoint's port") {
    CHECK(has_cidr(llm, "10.1.2.3", 8000));
    CHECK(has_cidr(llm, "203.0.113.7", 443));
    CHECK(llm.cidrs.size() == 2);
  }
  SECTION("every endpoint gets an allowing decision") {
    for (const Decision& d : llm.decisions) CHECK(d.allowed);
    CHECK(llm.decisions.size() == 4);
  }
  SECTION("wildcard endpoints stay wildcards") {
    CHECK(find_host(rules.of(Purpose::prospecting), "*.clearbit.com", 443));
  }
  SECTION("the rules egress") { CHECK(egresses(rules, kInternal)); }
}

TEST_CASE("policy::compile with allow_llm_egress=false keeps only internal destinations",
          "[policy][compile]") {
  const EffectiveRules rules = compile_with(policy_json(false, false));
  const PurposeRules& llm = rules.of(Purpose::llm);

  SECTION("names stay but are confined to internal networks at pin time") {
    const HostRule* r = find_host(llm, "api.anthropic.com", 443);
    REQUIRE(r);
    REQUIRE(r->scope);
    CHECK(*r->scope == kInternal);
    CHECK_THAT(decision_for(llm, "https://api.anthropic.com").reason,
               Catch::Contains("internal addresses only"));
  }
  SECTION("an external address endpoint is blocked, an internal one kept") {
    CHECK(has_cidr(llm, "10.1.2.3", 8000));
    CHECK_FALSE(has_cidr(llm, "203.0.113.7", 443));
    const Decision& d = decision_for(llm, "https://203.0.113.7");
    CHECK_FALSE(d.allowed);
    CHECK_THAT(d.reason, Catch::Contains("allow_llm_egress is false"));
  }
  SECTION("embeddings are confined the same way") {
    CHECK(has_cidr(rules.of(Purpose::embeddings), "10.9.0.0/16", 8080));
    CHECK(*find_host(rules.of(Purpose::embeddings), "api.openai.com", 443)->scope == kInternal);
  }
  SECTION("nothing can leave the organisation") {
    CHECK_FALSE(egresses(rules, kInternal));
    CHECK_FALSE(egresses(rules.of(Purpose::llm), kInternal));
  }
  SECTION("without internal networks nothing remains at all") {
    const EndpointsConfig bare =
        config_of(R"({"endpoints": {"llm": ["https://api.anthropic.com", "10.1.2.3:80"]}})");
    const EffectiveRules r = compile(policy_of(policy_json(false, false)), bare);
    CHECK(r.of(Purpose::llm).empty());
    CHECK_THAT(r.of(Purpose::llm).decisions[0].reason,
               Catch::Contains("no internal networks are configured"));
  }
}

TEST_CASE("policy::compile gates prospecting on allow_prospecting", "[policy][compile]") {
  SECTION("false allows no prospecting host, whatever the allowlist") {
    const EffectiveRules rules =
        compile_with(policy_json(true, false, R"(["api.apollo.io", "*.clearbit.com"])"));
    CHECK(rules.of(Purpose::prospecting).empty());
    for (const Decision& d : rules.of(Purpose::prospecting).decisions) {
      CHECK_FALSE(d.allowed);
      CHECK(d.reason == "blocked: allow_prospecting is false");
    }
  }
  SECTION("true allows the prospecting hosts, independent of allow_llm_egress") {
    const EffectiveRules rules = compile_with(policy_json(false, true));
    CHECK(find_host(rules.of(Purpose::prospecting), "api.apollo.io", 443));
    CHECK_FALSE(find_host(rules.of(Purpose::prospecting), "api.apollo.io", 443)->scope);
    CHECK(egresses(rules, kInternal));
    CHECK_FALSE(egresses(rules.of(Purpose::llm), kInternal));
  }
}

TEST_CASE("policy::compile intersects the allowlist", "[policy][compile]") {
  SECTION("an exact name entry admits only that endpoint") {
    const EffectiveRules rules = compile_with(policy_json(true, true, R"(["api.anthropic.com"])"));
    const PurposeRules& llm = rules.of(Purpose::llm);
    REQUIRE(llm.hosts.size() == 1);
    CHECK(find_host(llm, "api.anthropic.com", 443));
    CHECK(llm.cidrs.empty());
    CHECK_THAT(decision_for(llm, "http://ollama.corp.example:11434").reason,
               Catch::Contains("no egress_allowlist entry matches"));
    CHECK(rules.of(Purpose::prospecting).empty());
  }
  SECTION("a wildcard entry admits subdomains but not the apex") {
    const EndpointsConfig c = config_of(
        R"({"endpoints": {"llm": ["https://api.anthropic.com", "https://anthropic.com"]}})");
    const EffectiveRules r = compile(policy_of(policy_json(true, false, R"(["*.anthropic.com"])")), c);
    CHECK(find_host(r.of(Purpose::llm), "api.anthropic.com", 443));
    CHECK_FALSE(find_host(r.of(Purpose::llm), "anthropic.com", 443));
  }
  SECTION("a narrower entry narrows a wildcard endpoint") {
    const EffectiveRules rules =
        compile_with(policy_json(true, true, R"(["person.clearbit.com"])"));
    const PurposeRules& p = rules.of(Purpose::prospecting);
    REQUIRE(p.hosts.size() == 1);
    CHECK(p.hosts[0].pattern.to_string() == "person.clearbit.com");
  }
  SECTION("an entry's port must match the endpoint's") {
    const EffectiveRules rules =
        compile_with(policy_json(true, false, R"(["api.anthropic.com:8443"])"));
    CHECK_FALSE(find_host(rules.of(Purpose::llm), "api.anthropic.com", 443));
    const EffectiveRules ok = compile_with(policy_json(true, false, R"(["api.anthropic.com:443"])"));
    CHECK(find_host(ok.of(Purpose::llm), "api.anthropic.com", 443));
  }
  SECTION("a CIDR entry confines a name endpoint to that block") {
    const EffectiveRules rules = compile_with(policy_json(true, false, R"(["10.20.0.0/16:443"])"));
    const HostRule* r = find_host(rules.of(Purpose::llm), "api.anthropic.com", 443);
    REQUIRE(r);
    REQUIRE(r->scope);
    CHECK(*r->scope == std::vector<Cidr>{cidr("10.20.0.0/16")});
  }
  SECTION("a name entry and a CIDR entry for one name merge to the wider scope") {
    const EffectiveRules rules =
        compile_with(policy_json(true, false, R"(["10.20.0.0/16:443", "api.anthropic.com"])"));
    const HostRule* r = find_host(rules.of(Purpose::llm), "api.anthropic.com", 443);
    REQUIRE(r);
    CHECK_FALSE(r->scope);
  }
  SECTION("CIDR entries intersect address endpoints") {
    const EffectiveRules narrow = compile_with(policy_json(true, false, R"(["10.9.5.0/24"])"));
    CHECK(has_cidr(narrow.of(Purpose::embeddings), "10.9.5.0/24", 8080));
    CHECK(narrow.of(Purpose::embeddings).cidrs.size() == 1);
    const EffectiveRules wide = compile_with(policy_json(true, false, R"(["10.0.0.0/8:8080"])"));
    CHECK(has_cidr(wide.of(Purpose::embeddings), "10.9.0.0/16", 8080));
  }
  SECTION("name entries never admit address endpoints") {
    const EffectiveRules rules = compile_with(policy_json(true, false, R"(["*.example.com"])"));
    CHECK(rules.of(Purpose::llm).cidrs.empty());
  }
  SECTION("an empty allowlist allows nothing") {
    const EffectiveRules rules = compile_with(policy_json(true, true, "[]"));
    for (Purpose p : kPurposes) CHECK(rules.of(p).empty());
    CHECK_FALSE(egresses(rules, kInternal));
  }
  SECTION("allowlist and allow_llm_egress=false combine: the intersection of both") {
    const EffectiveRules rules =
        compile_with(policy_json(false, false, R"(["api.anthropic.com", "0.0.0.0/0:443"])"));
    const PurposeRules& llm = rules.of(Purpose::llm);
    CHECK_FALSE(has_cidr(llm, "203.0.113.7", 443));
    CHECK(*find_host(llm, "api.anthropic.com", 443)->scope == kInternal);
  }
}

TEST_CASE("policy::egresses classifies rules against the internal networks",
          "[policy][compile]") {
  PurposeRules r;
  SECTION("no rules: no egress") { CHECK_FALSE(egresses(r, kInternal)); }
  SECTION("a block inside an internal network does not egress") {
    r.cidrs.push_back({cidr("10.1.0.0/16"), 443});
    CHECK_FALSE(egresses(r, kInternal));
  }
  SECTION("a block straddling the boundary egresses") {
    r.cidrs.push_back({cidr("8.0.0.0/6"), 443});
    CHECK(egresses(r, kInternal));
  }
  SECTION("an unrestricted name egresses; a confined one does not") {
    r.hosts.push_back({host("a.example.com"), 443, std::vector<Cidr>{cidr("10.0.0.0/9")}});
    CHECK_FALSE(egresses(r, kInternal));
    r.hosts.push_back({host("b.example.com"), 443, std::nullopt});
    CHECK(egresses(r, kInternal));
  }
}

TEST_CASE("policy rules answer enforcement-time questions", "[policy][compile]") {
  const EffectiveRules rules = compile_with(policy_json(true, true));
  const PurposeRules& llm = rules.of(Purpose::llm);
  const DenyOptions deny{};

  SECTION("names are allowed only on their port") {
    CHECK(name_allowed(llm, "api.anthropic.com", 443));
    CHECK_FALSE(name_allowed(llm, "api.anthropic.com", 80));
    CHECK_FALSE(name_allowed(llm, "evil.example.com", 443));
    CHECK(name_allowed(rules.of(Purpose::prospecting), "person.clearbit.com", 443));
    CHECK_FALSE(name_allowed(rules.of(Purpose::prospecting), "clearbit.com", 443));
  }
  SECTION("pins respect the rule's scope") {
    CHECK(pin_allowed(llm, "api.anthropic.com", ip("203.0.113.50"), 443, deny));
    CHECK(pin_allowed(llm, "ollama.corp.example", ip("10.3.3.3"), 11434, deny));
    CHECK_FALSE(pin_allowed(llm, "ollama.corp.example", ip("203.0.113.50"), 11434, deny));
    CHECK_FALSE(pin_allowed(llm, "not.allowed.example", ip("203.0.113.50"), 443, deny));
  }
  SECTION("an internal bound narrows confined names only") {
    const std::vector<Cidr> bound = {cidr("10.3.0.0/16")};
    REQUIRE(find_host(llm, "ollama.corp.example", 11434)->confined);  // an internal name
    CHECK(pin_allowed(llm, "ollama.corp.example", ip("10.3.3.3"), 11434, deny, bound));
    CHECK_FALSE(pin_allowed(llm, "ollama.corp.example", ip("10.4.3.3"), 11434, deny, bound));
    CHECK(pin_allowed(llm, "ollama.corp.example", ip("10.4.3.3"), 11434, deny, {}));
    CHECK(pin_allowed(llm, "api.anthropic.com", ip("203.0.113.50"), 443, deny, bound));
    // A scope an allowlist's address block gave is no internal one: not bounded.
    const PurposeRules listed =
        compile_with(policy_json(true, false, R"(["203.0.113.0/24"])")).of(Purpose::llm);
    const HostRule* r = find_host(listed, "api.anthropic.com", 443);
    REQUIRE(r);
    REQUIRE(r->scope);
    CHECK_FALSE(r->confined);
    CHECK(pin_allowed(listed, "api.anthropic.com", ip("203.0.113.50"), 443, deny, bound));
    // With allow_llm_egress=false every name's scope is the internal networks'.
    const PurposeRules closed = compile_with(policy_json(false, false)).of(Purpose::llm);
    CHECK(find_host(closed, "ollama.corp.example", 11434)->confined);
  }
  SECTION("a rule merged from a confined endpoint and an unrestricted one is neither scoped nor confined") {
    const EndpointsConfig c = config_of(R"({"internal_networks": ["10.0.0.0/8"],
        "internal_domains": ["llm.corp.example"],
        "endpoints": {"llm": ["https://llm.corp.example", "*.corp.example:443"]}})");
    const EffectiveRules merged = compile(policy_of(policy_json(true, false, R"(["llm.corp.example"])")), c);
    const HostRule* r = find_host(merged.of(Purpose::llm), "llm.corp.example", 443);
    REQUIRE(r);
    CHECK_FALSE(r->scope);
    CHECK_FALSE(r->confined);
    auto back = rules_from_json(to_json(merged));  // what the agent is sent, it accepts
    REQUIRE(back);
    CHECK(*back == merged);
  }
  SECTION("always-denied addresses are never pinned, even for unrestricted names") {
    CHECK_FALSE(pin_allowed(llm, "api.anthropic.com", ip("169.254.169.254"), 443, deny));
    CHECK_FALSE(pin_allowed(llm, "api.anthropic.com", ip("100.100.100.200"), 443, deny));
    CHECK_FALSE(pin_allowed(llm, "api.anthropic.com", ip("fe80::1"), 443, deny));
    CHECK_FALSE(pin_allowed(llm, "api.anthropic.com", ip("127.0.0.1"), 443, deny));
    CHECK(pin_allowed(llm, "api.anthropic.com", ip("127.0.0.1"), 443,
                      DenyOptions{.allow_loopback = true}));
    CHECK_FALSE(pin_allowed(llm, "api.anthropic.com", ip("::ffff:169.254.169.254"), 443,
                            DenyOptions{.allow_loopback = true}));
  }
  SECTION("literal addresses need a static rule with the port") {
    CHECK(address_allowed(llm, ip("10.1.2.3"), 8000, deny));
    CHECK_FALSE(address_allowed(llm, ip("10.1.2.3"), 8001, deny));
    CHECK_FALSE(address_allowed(llm, ip("10.1.2.4"), 8000, deny));
    CHECK(address_allowed(llm, ip("::ffff:10.1.2.3"), 8000, deny));
  }
}

TEST_CASE("policy::rules_from_json reads back what to_json wrote", "[policy][compile]") {
  const EffectiveRules rules = compile_with(policy_json(true, true, R"(["api.anthropic.com",
      "10.0.0.0/8", "*.clearbit.com", "api.apollo.io"])"));
  auto back = rules_from_json(to_json(rules));
  REQUIRE(back);
  CHECK(*back == rules);
  const EffectiveRules closed = compile_with(policy_json(false, false));
  REQUIRE(find_host(closed.of(Purpose::llm), "ollama.corp.example", 11434)->confined);
  auto closed_back = rules_from_json(to_json(closed));
  REQUIRE(closed_back);
  CHECK(*closed_back == closed);
}

TEST_CASE("policy::rules_from_json refuses what the agent must not enforce",
          "[policy][compile]") {
  const auto rules_with = [](const char* llm) {
    return nlohmann::json::parse(std::string(R"({"embeddings":{"hosts":[],"cidrs":[]},
        "prospecting":{"hosts":[],"cidrs":[]},"llm":)") + llm + "}");
  };
  struct Row {
    const char* llm;
    ErrorCode code;
    const char* path;
  };
  const std::vector<Row> rows = {
      {R"({"hosts":[],"cidrs":[{"block":"169.254.169.254","port":80}]})", ErrorCode::denied_range,
       "llm.cidrs[0].block"},
      {R"({"hosts":[],"cidrs":[{"block":"10.0.0.1/8","port":80}]})", ErrorCode::host_bits_set,
       "llm.cidrs[0].block"},
      {R"({"hosts":[{"pattern":"a.example.com","port":0}],"cidrs":[]})", ErrorCode::bad_port,
       "llm.hosts[0].port"},
      {R"({"hosts":[{"pattern":"a.example.com","port":70000}],"cidrs":[]})", ErrorCode::bad_port,
       "llm.hosts[0].port"},
      {R"({"hosts":[{"pattern":"*.com","port":443}],"cidrs":[]})", ErrorCode::bad_wildcard,
       "llm.hosts[0].pattern"},
      {R"({"hosts":[{"pattern":"a.example.com","port":443,"scope":[]}],"cidrs":[]})",
       ErrorCode::empty, "llm.hosts[0].scope"},
      {R"({"hosts":[{"pattern":"a.example.com","port":443,"x":1}],"cidrs":[]})",
       ErrorCode::unknown_field, "llm.hosts[0].x"},
      {R"({"hosts":[{"pattern":"a.example.com","port":443,"scope":["10.0.0.0/8"],"confined":1}],"cidrs":[]})",
       ErrorCode::wrong_type, "llm.hosts[0].confined"},
      {R"({"hosts":[{"pattern":"a.example.com","port":443,"confined":true}],"cidrs":[]})",
       ErrorCode::bad_value, "llm.hosts[0].confined"},
      {R"({"cidrs":[]})", ErrorCode::missing_field, "llm.hosts"},
      {R"({"hosts":{},"cidrs":[]})", ErrorCode::wrong_type, "llm.hosts"},
  };
  for (const Row& row : rows) {
    DYNAMIC_SECTION(row.llm) {
      auto r = rules_from_json(rules_with(row.llm));
      REQUIRE_FALSE(r);
      CHECK(r.error().front().code == row.code);
      CHECK(r.error().front().path == row.path);
    }
  }
  SECTION("a missing purpose is an error") {
    auto r = rules_from_json(nlohmann::json::parse(R"({"llm":{"hosts":[],"cidrs":[]}})"));
    REQUIRE_FALSE(r);
    CHECK(r.error().size() == 2);
  }
}

TEST_CASE("policy::explain names the banner and each decision", "[policy][compile]") {
  const EndpointsConfig c = config_of(kConfig);
  const TenantPolicy open = policy_of(policy_json(true, false));
  const std::string text = explain(open, c, compile(open, c));
  CHECK_THAT(text, Catch::Contains("Data egress: EXTERNAL"));
  CHECK_THAT(text, Catch::Contains("BLOCK https://api.apollo.io"));
  CHECK_THAT(text, Catch::Contains("ALLOW https://api.anthropic.com"));

  const TenantPolicy closed = policy_of(policy_json(false, false));
  CHECK_THAT(explain(closed, c, compile(closed, c)), Catch::Contains("Data egress: NONE"));
}
