// The application layer's half of policy enforcement: the stricter of two
// policies, what a tenant gets before the kernel has anything, and the
// configuration that ties mcpd to sluice-agent. The push itself runs
// against a real agent in tests/interop/policy_push.sh.
#include <fstream>

#include <catch2/catch.hpp>

#include "config.h"
#include "enforcement.h"
#include "store.h"
#include "temp_dir.h"

namespace {

using sluice::mcpd::Enforcer;
using sluice::mcpd::McpdConfig;
using sluice::mcpd::Store;
using sluice::testing::TempDir;
namespace sp = sluice::policy;

sp::TenantPolicy parse(const char* text) {
  auto p = sp::parse_policy(text);
  REQUIRE(p);
  return *p;
}

}  // namespace

TEST_CASE("mcpd::stricter keeps only what both policies allow", "[mcpd][enforcement]") {
  const auto open = parse(R"({"allow_llm_egress": true, "allow_prospecting": true, "discovery_samples": true})");
  const auto closed = parse(R"({"allow_llm_egress": false, "allow_prospecting": true, "discovery_samples": false})");
  const auto listed = parse(R"({"allow_llm_egress": true, "allow_prospecting": true, "discovery_samples": true,
                                "egress_allowlist": ["api.anthropic.com", "10.0.0.0/8:443", "*.openai.com"]})");
  const auto other = parse(R"({"allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": true,
                               "egress_allowlist": ["api.openai.com", "10.0.0.0/8:443"]})");

  const auto a = sluice::mcpd::stricter(open, closed);
  CHECK_FALSE(a.allow_llm_egress);
  CHECK(a.allow_prospecting);
  CHECK_FALSE(a.discovery_samples);
  CHECK_FALSE(a.egress_allowlist.has_value());
  CHECK(sluice::mcpd::stricter(closed, open) == a);

  // An absent allowlist imposes nothing: the other side's list stands.
  CHECK(sluice::mcpd::stricter(open, listed).egress_allowlist == listed.egress_allowlist);
  CHECK(sluice::mcpd::stricter(listed, open).egress_allowlist == listed.egress_allowlist);

  // Both listed: only the entries both name. "*.openai.com" and
  // "api.openai.com" drop out, narrower than the true intersection.
  const auto both = sluice::mcpd::stricter(listed, other);
  REQUIRE(both.egress_allowlist);
  REQUIRE(both.egress_allowlist->size() == 1);
  CHECK(both.egress_allowlist->front().to_string() == "10.0.0.0/8:443");
  CHECK_FALSE(both.allow_prospecting);

  const auto none = sluice::mcpd::deny_all();
  CHECK(sluice::mcpd::stricter(listed, none) == none);
  REQUIRE(none.egress_allowlist);
  CHECK(none.egress_allowlist->empty());
}

TEST_CASE("mcpd::Enforcer: the application layer holds the stricter of desired and applied",
          "[mcpd][enforcement]") {
  TempDir dir;
  auto store = Store::open(dir.file("mcpd.db"));
  REQUIRE(store);
  auto tid = (*store)->create_tenant("acme", "/nonexistent.db");
  REQUIRE(tid);
  const sluice::mcpd::Tenant tenant{*tid, "acme", "/nonexistent.db"};

  std::ofstream(dir.file("endpoints.json"))
      << R"({"internal_networks": ["10.0.0.0/8"], "endpoints": {"llm": ["https://api.anthropic.com"]}})";
  McpdConfig c;
  c.agent_socket = dir.file("no-agent.sock");  // nothing listens: every push stays pending
  c.endpoints_file = dir.file("endpoints.json");
  c.agent_timeout = std::chrono::milliseconds(200);
  auto enforcer = Enforcer::open(c, **store);
  REQUIRE(enforcer);

  // No policy at all: nothing allowed, nothing egresses.
  auto e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(*e == sluice::mcpd::deny_all());
  CHECK((*enforcer)->egresses(*e) == false);

  // Stored, never applied: still nothing.
  const std::string open = R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
  const std::string closed = R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
  auto v1 = (*store)->put_policy(*tid, closed, std::nullopt);
  REQUIRE(v1);
  const auto k = (*enforcer)->push(tenant, *v1, parse(closed.c_str()));
  CHECK(k.state == sluice::mcpd::KernelEnforcement::State::pending);
  CHECK_THAT(k.detail, Catch::Contains("cannot reach the agent"));
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(*e == sluice::mcpd::deny_all());

  // v1 applied, v2 (open) desired: v1 rules.
  REQUIRE((*store)->set_policy_applied(*tid, *v1, 7));
  auto v2 = (*store)->put_policy(*tid, open, std::nullopt);
  REQUIRE(v2);
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK_FALSE(e->allow_llm_egress);
  CHECK((*enforcer)->egresses(*e) == false);

  // v2 applied: v2 rules; the applied record never moves backwards.
  REQUIRE((*store)->set_policy_applied(*tid, *v2, 8));
  REQUIRE((*store)->set_policy_applied(*tid, *v1, 9));
  auto applied = (*store)->policy_applied(*tid);
  REQUIRE(applied);
  CHECK(*applied == std::optional<std::int64_t>(*v2));
  e = (*enforcer)->effective(tenant);
  REQUIRE(e);
  CHECK(e->allow_llm_egress);
  CHECK((*enforcer)->egresses(*e) == true);  // api.anthropic.com is outside 10/8
}

TEST_CASE("mcpd: the [agent] configuration is all or nothing", "[mcpd][enforcement][config]") {
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nsocket = \"/run/sluice/agent.sock\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nendpoints_file = \"/etc/sluice/endpoints.json\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\nsocket = \"relative.sock\"\nendpoints_file = \"/e.json\"\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[agent]\ntimeout_ms = 5\n"));
  auto ok = sluice::mcpd::parse_config(
      "[agent]\nsocket = \"/run/sluice/agent.sock\"\nendpoints_file = \"/etc/sluice/endpoints.json\"\nretry_ms = 1000\n");
  REQUIRE(ok);
  CHECK(ok->agent_retry == std::chrono::milliseconds(1000));
  // The two throughput knobs next to it: bounded, 0 allowed (off).
  auto knobs = sluice::mcpd::parse_config("[storage]\naudit_group_wait_us = 0\n[query]\ninline_budget_us = 500\n");
  REQUIRE(knobs);
  CHECK(knobs->audit_group_wait == std::chrono::microseconds(0));
  CHECK(knobs->inline_budget == std::chrono::microseconds(500));
  CHECK_FALSE(sluice::mcpd::parse_config("[storage]\naudit_group_wait_us = 20000\n"));
  CHECK_FALSE(sluice::mcpd::parse_config("[query]\ninline_budget_us = -1\n"));

  // A bad endpoints file refuses start-up, naming the file.
  TempDir dir;
  std::ofstream(dir.file("endpoints.json")) << R"({"endpoints": {"llm": ["http://169.254.169.254"]}})";
  auto store = Store::open(dir.file("mcpd.db"));
  REQUIRE(store);
  McpdConfig c;
  c.agent_socket = "/run/sluice/agent.sock";
  c.endpoints_file = dir.file("endpoints.json");
  auto e = Enforcer::open(c, **store);
  REQUIRE_FALSE(e);
  CHECK_THAT(e.error().what, Catch::Contains("endpoints.json"));
  c.endpoints_file = dir.file("missing.json");
  REQUIRE_FALSE(Enforcer::open(c, **store));
  CHECK(sluice::mcpd::valid_tenant_name("acme-2"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("Acme"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("acme.corp"));
  CHECK_FALSE(sluice::mcpd::valid_tenant_name("-acme"));
}
