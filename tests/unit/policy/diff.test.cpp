#include "test_support.h"

using namespace sluice::policy;
using namespace sluice::policy::testing;

namespace {

constexpr char kConfig[] = R"({
  "internal_networks": ["10.0.0.0/8"],
  "endpoints": {
    "llm": ["https://api.anthropic.com", "https://203.0.113.7", "http://10.1.2.3:8000"],
    "embeddings": ["10.9.0.0/16:8080"],
    "prospecting": ["https://api.apollo.io"]}})";

EffectiveRules rules_for(bool llm, bool prospecting, const char* allowlist = "null") {
  const std::string json = std::string("{\"allow_llm_egress\":") + (llm ? "true" : "false") +
                           ",\"allow_prospecting\":" + (prospecting ? "true" : "false") +
                           ",\"discovery_samples\":false,\"egress_allowlist\":" + allowlist + "}";
  return compile(policy_of(json), config_of(kConfig));
}

}  // namespace

TEST_CASE("policy::diff reports what a change revokes", "[policy][diff]") {
  SECTION("identical rules revoke and grant nothing") {
    const RulesDiff d = diff(rules_for(true, true), rules_for(true, true));
    CHECK_FALSE(d.revokes());
    for (Purpose p : kPurposes) {
      CHECK(d.of(p).granted_hosts.empty());
      CHECK(d.of(p).granted_cidrs.empty());
    }
  }
  SECTION("allow_llm_egress true -> false revokes external reach") {
    const RulesDiff d = diff(rules_for(true, false), rules_for(false, false));
    REQUIRE(d.revokes());
    const PurposeDiff& llm = d.of(Purpose::llm);
    REQUIRE(llm.revoked_hosts.size() == 1);
    CHECK(llm.revoked_hosts[0].pattern.name == "api.anthropic.com");
    CHECK_FALSE(llm.revoked_hosts[0].scope);
    REQUIRE(llm.revoked_cidrs.size() == 1);
    CHECK(llm.revoked_cidrs[0].block.to_string() == "203.0.113.7");
    // The name stays, confined to internal addresses: narrower, so no grant.
    CHECK(llm.granted_hosts.empty());
    CHECK_FALSE(d.of(Purpose::embeddings).revokes());
  }
  SECTION("allow_llm_egress false -> true revokes nothing") {
    CHECK_FALSE(diff(rules_for(false, false), rules_for(true, false)).revokes());
  }
  SECTION("allow_prospecting true -> false revokes the prospecting hosts") {
    const RulesDiff d = diff(rules_for(true, true), rules_for(true, false));
    CHECK(d.of(Purpose::prospecting).revoked_hosts.size() == 1);
    CHECK_FALSE(d.of(Purpose::llm).revokes());
  }
  SECTION("widening an allowlist block revokes nothing; narrowing it does") {
    const EffectiveRules narrow = rules_for(true, false, R"(["10.9.5.0/24"])");
    const EffectiveRules wide = rules_for(true, false, R"(["10.9.0.0/16"])");
    CHECK_FALSE(diff(narrow, wide).revokes());
    const RulesDiff d = diff(wide, narrow);
    REQUIRE(d.of(Purpose::embeddings).revoked_cidrs.size() == 1);
    CHECK(d.of(Purpose::embeddings).revoked_cidrs[0].block.to_string() == "10.9.0.0/16");
  }
  SECTION("an old rule covered by a wider new rule is not revoked") {
    EffectiveRules before, after;
    before.of(Purpose::llm).hosts.push_back({host("a.example.com"), 443, std::nullopt});
    after.of(Purpose::llm).hosts.push_back({host("*.example.com"), 443, std::nullopt});
    CHECK_FALSE(diff(before, after).revokes());
    CHECK(diff(after, before).revokes());
  }
  SECTION("a port change is a revocation") {
    EffectiveRules before, after;
    before.of(Purpose::llm).hosts.push_back({host("a.example.com"), 443, std::nullopt});
    after.of(Purpose::llm).hosts.push_back({host("a.example.com"), 8443, std::nullopt});
    CHECK(diff(before, after).revokes());
  }
  SECTION("narrowing a scope is a revocation") {
    EffectiveRules before, after;
    before.of(Purpose::llm).hosts.push_back(
        {host("a.example.com"), 443, std::vector<Cidr>{cidr("10.0.0.0/8")}});
    after.of(Purpose::llm).hosts.push_back(
        {host("a.example.com"), 443, std::vector<Cidr>{cidr("10.1.0.0/16")}});
    CHECK(diff(before, after).revokes());
    CHECK_FALSE(diff(after, before).revokes());
  }
  SECTION("the diff serialises per purpose") {
    const nlohmann::json j = to_json(diff(rules_for(true, true), rules_for(false, false)));
    CHECK(j["llm"]["revoked_hosts"].size() == 1);
    CHECK(j["prospecting"]["revoked_hosts"][0]["pattern"] == "api.apollo.io");
    CHECK(j["embeddings"]["revoked_cidrs"].empty());
  }
}
