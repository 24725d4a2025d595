// What the agent saves and reloads (state.json), and the pure helpers of
// the cgroup module: the cgroup2 mount found in mountinfo text and the
// tenant names that may become cgroup path components.
#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "../policy/test_support.h"
#include "cgroup.h"
#include "state.h"

using namespace sluice::agent;
using namespace sluice::policy;
using Catch::Matchers::Contains;
using sluice::policy::testing::cidr;
using sluice::policy::testing::host;
using sluice::policy::testing::ip;
using Json = nlohmann::json;

namespace {

PurposeRules rules_with(std::vector<HostRule> hosts, std::vector<CidrRule> cidrs) {
  std::sort(hosts.begin(), hosts.end());
  std::sort(cidrs.begin(), cidrs.end());
  PurposeRules r;
  r.hosts = std::move(hosts);
  r.cidrs = std::move(cidrs);
  return r;
}

AgentState sample_state() {
  AgentState s;
  s.generation = 9;
  s.next_ruleset = 7;

  TenantState& acme = s.tenants["acme"];
  acme.version = 3;
  PurposeState& llm = acme.of(Purpose::llm);
  llm.ruleset = 1;
  llm.rules = rules_with({HostRule{host("api.anthropic.com"), 443, std::nullopt},
                          HostRule{host("*.corp.example"), 11434,
                                   std::vector<Cidr>{cidr("10.0.0.0/8"), cidr("fd00::/8")}}},
                         {CidrRule{cidr("10.1.2.3"), 8000}, CidrRule{cidr("2001:db8::/32"), 443}});
  llm.pins[PinKey{ip("203.0.113.7"), 443}] = Pin{"api.anthropic.com", 1'000'000'000'000ull};
  llm.pins[PinKey{ip("2001:db8::7"), 443}] = Pin{"api.anthropic.com", 2'000'000'000'000ull};
  llm.pins[PinKey{ip("10.9.8.7"), 11434}] = Pin{"ollama.corp.example", 3};
  acme.of(Purpose::embeddings).ruleset = 2;
  acme.of(Purpose::embeddings).rules = rules_with({}, {CidrRule{cidr("10.9.0.0/16"), 8080}});
  acme.of(Purpose::prospecting).ruleset = 3;

  TenantState& globex = s.tenants["globex"];
  globex.version = 0;
  globex.of(Purpose::llm).ruleset = 4;
  globex.of(Purpose::embeddings).ruleset = 5;
  globex.of(Purpose::embeddings).rules =
      rules_with({HostRule{host("api.openai.com"), 443, std::nullopt}}, {});
  globex.of(Purpose::embeddings).pins[PinKey{ip("2606:4700::6810:1"), 443}] =
      Pin{"api.openai.com", UINT64_MAX};
  globex.of(Purpose::prospecting).ruleset = 6;
  return s;
}

void check_same(const AgentState& a, const AgentState& b) {
  CHECK(a.generation == b.generation);
  CHECK(a.next_ruleset == b.next_ruleset);
  REQUIRE(a.tenants.size() == b.tenants.size());
  for (const auto& [name, ta] : a.tenants) {
    INFO("tenant " << name);
    REQUIRE(b.tenants.contains(name));
    const TenantState& tb = b.tenants.at(name);
    CHECK(ta.version == tb.version);
    for (Purpose p : kPurposes) {
      INFO("purpose " << to_string(p));
      const PurposeState& pa = ta.of(p);
      const PurposeState& pb = tb.of(p);
      CHECK(pa.ruleset == pb.ruleset);
      CHECK(pa.rules == pb.rules);
      REQUIRE(pa.pins.size() == pb.pins.size());
      for (const auto& [key, pin] : pa.pins) {
        INFO("pin " << key.addr.to_string() << " port " << key.port);
        REQUIRE(pb.pins.contains(key));
        CHECK(pb.pins.at(key).host == pin.host);
        CHECK(pb.pins.at(key).expires_ns == pin.expires_ns);
      }
    }
  }
}

struct BadState {
  std::string what;
  Json doc;
};

Json& acme_of(Json& doc) { return doc["tenants"]["acme"]; }
Json& first_pin(Json& doc) { return acme_of(doc)["pins"]["llm"][0]; }

std::vector<BadState> bad_states() {
  const Json good = to_json(sample_state());
  std::vector<BadState> rows;
  const auto row = [&](std::string what, auto&& mutate) {
    Json doc = good;
    mutate(doc);
    rows.push_back({std::move(what), std::move(doc)});
  };
  row("not an object", [](Json& d) { d = Json::array({d}); });
  row("no generation", [](Json& d) { d.erase("generation"); });
  row("a negative generation", [](Json& d) { d["generation"] = -1; });
  row("a generation as a string", [](Json& d) { d["generation"] = "9"; });
  row("no next_ruleset", [](Json& d) { d.erase("next_ruleset"); });
  row("next_ruleset 0", [](Json& d) { d["next_ruleset"] = 0u; });
  row("next_ruleset beyond 32 bits", [](Json& d) { d["next_ruleset"] = 0x100000000ull; });
  row("no tenants", [](Json& d) { d.erase("tenants"); });
  row("tenants as an array", [](Json& d) { d["tenants"] = Json::array(); });
  row("a tenant as a string", [](Json& d) { d["tenants"]["acme"] = "acme"; });
  row("a tenant without a version", [](Json& d) { acme_of(d).erase("version"); });
  row("a negative tenant version", [](Json& d) { acme_of(d)["version"] = -3; });
  row("a ruleset 0", [](Json& d) { acme_of(d)["rulesets"]["llm"] = 0u; });
  row("a ruleset equal to next_ruleset", [](Json& d) { acme_of(d)["rulesets"]["llm"] = 7u; });
  row("a ruleset beyond next_ruleset", [](Json& d) { acme_of(d)["rulesets"]["embeddings"] = 99u; });
  row("a missing ruleset", [](Json& d) { acme_of(d)["rulesets"].erase("prospecting"); });
  row("a ruleset as a string", [](Json& d) { acme_of(d)["rulesets"]["llm"] = "1"; });
  row("a tenant without rulesets", [](Json& d) { acme_of(d).erase("rulesets"); });
  row("rulesets as an array", [](Json& d) { acme_of(d)["rulesets"] = Json::array({1, 2, 3}); });
  row("one ruleset shared by two purposes",
      [](Json& d) { acme_of(d)["rulesets"]["embeddings"] = 1u; });
  row("one ruleset shared by two tenants",
      [](Json& d) { d["tenants"]["globex"]["rulesets"]["llm"] = 1u; });
  row("a pin with port 0", [](Json& d) { first_pin(d)["port"] = 0u; });
  row("a pin with port 65536", [](Json& d) { first_pin(d)["port"] = 65536u; });
  row("a pin without a port", [](Json& d) { first_pin(d).erase("port"); });
  row("a pin without a host", [](Json& d) { first_pin(d).erase("host"); });
  row("a pin whose host is not a string", [](Json& d) { first_pin(d)["host"] = 1; });
  row("a pin with a name for an address",
      [](Json& d) { first_pin(d)["addr"] = "api.example.com"; });
  row("a pin with a CIDR for an address", [](Json& d) { first_pin(d)["addr"] = "10.0.0.0/8"; });
  row("a pin without an address", [](Json& d) { first_pin(d).erase("addr"); });
  row("a pin address as a number", [](Json& d) { first_pin(d)["addr"] = 167772161u; });
  row("a pin without an expiry", [](Json& d) { first_pin(d).erase("expires_ns"); });
  row("a pin that is not an object", [](Json& d) { first_pin(d) = 5; });
  row("a pin list that is not an array", [](Json& d) { acme_of(d)["pins"]["llm"] = "pins"; });
  row("a tenant without pins", [](Json& d) { acme_of(d).erase("pins"); });
  row("pins as an array", [](Json& d) { acme_of(d)["pins"] = Json::array(); });
  row("a tenant without rules", [](Json& d) { acme_of(d).erase("rules"); });
  row("rules with an always-denied block", [](Json& d) {
    acme_of(d)["rules"]["llm"]["cidrs"].push_back({{"block", "169.254.169.254"}, {"port", 80u}});
  });
  row("rules with a loopback block", [](Json& d) {
    acme_of(d)["rules"]["embeddings"]["cidrs"].push_back({{"block", "127.0.0.0/8"}, {"port", 80u}});
  });
  row("rules with an unknown field", [](Json& d) { acme_of(d)["rules"]["llm"]["all"] = true; });
  // Tenant names become cgroup paths and nft strings: a name that could
  // never have been applied is not trusted from the file either.
  const auto rename = [](const std::string& to) {
    return [to](Json& d) {
      d["tenants"][to] = acme_of(d);
      d["tenants"].erase("acme");
    };
  };
  row("a tenant name with '..'", rename("../../system.slice"));
  row("a tenant name with a quote", rename("a\" accept"));
  row("an uppercase tenant name", rename("ACME"));
  row("an empty tenant name", rename(""));
  return rows;
}

constexpr char kHybrid[] =
    "22 28 0:20 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw\n"
    "25 22 0:23 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755\n"
    "26 25 0:24 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 "
    "cgroup2 rw,nsdelegate\n"
    "27 25 0:25 / /sys/fs/cgroup/systemd rw,nosuid,nodev,noexec,relatime shared:11 - cgroup "
    "cgroup rw,xattr,name=systemd\n"
    "30 25 0:28 / /sys/fs/cgroup/memory rw,nosuid,nodev,noexec,relatime shared:14 - cgroup "
    "cgroup rw,memory\n";

constexpr char kUnified[] =
    "24 29 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:2 - sysfs sysfs rw\n"
    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 "
    "rw,nsdelegate,memory_recursiveprot\n"
    "36 24 0:31 / /sys/fs/bpf rw,nosuid,nodev,noexec,relatime shared:10 - bpf bpf rw,mode=700\n";

}  // namespace

TEST_CASE("agent::state survives a round trip through JSON", "[agent][state]") {
  const AgentState s = sample_state();

  SECTION("to_json then state_from_json gives the same state") {
    auto back = state_from_json(to_json(s), DenyOptions{});
    REQUIRE(back);
    check_same(s, *back);
  }
  SECTION("so does a trip through the saved text") {
    const Json doc = Json::parse(to_json(s).dump());
    auto back = state_from_json(doc, DenyOptions{});
    REQUIRE(back);
    check_same(s, *back);
  }
  SECTION("the text is stable: saving the reloaded state gives the same bytes") {
    auto back = state_from_json(to_json(s), DenyOptions{});
    REQUIRE(back);
    CHECK(to_json(*back).dump() == to_json(s).dump());
  }
  SECTION("decisions are commentary and are not saved") {
    AgentState with = s;
    with.tenants["acme"]
        .of(Purpose::llm)
        .rules.decisions.push_back(Decision{"https://api.anthropic.com:443", true, "configured"});
    auto back = state_from_json(to_json(with), DenyOptions{});
    REQUIRE(back);
    CHECK(back->tenants.at("acme").of(Purpose::llm).rules.decisions.empty());
    check_same(s, *back);
  }
  SECTION("an empty state round-trips") {
    auto back = state_from_json(to_json(AgentState{}), DenyOptions{});
    REQUIRE(back);
    CHECK(back->generation == 0);
    CHECK(back->next_ruleset == 1);
    CHECK(back->tenants.empty());
  }
  SECTION("loopback rules reload only where loopback is allowed") {
    AgentState lo = s;
    lo.tenants["acme"]
        .of(Purpose::embeddings)
        .rules.cidrs.push_back(CidrRule{cidr("127.0.0.1"), 8080});
    std::sort(lo.tenants["acme"].of(Purpose::embeddings).rules.cidrs.begin(),
              lo.tenants["acme"].of(Purpose::embeddings).rules.cidrs.end());
    CHECK_FALSE(state_from_json(to_json(lo), DenyOptions{}));
    auto back = state_from_json(to_json(lo), DenyOptions{.allow_loopback = true});
    REQUIRE(back);
    check_same(lo, *back);
  }
}

TEST_CASE("agent::state_from_json refuses a malformed state whole", "[agent][state]") {
  REQUIRE(state_from_json(to_json(sample_state()), DenyOptions{}));
  const std::vector<BadState> rows = bad_states();
  REQUIRE(rows.size() >= 20);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const BadState& row = rows[i];
    DYNAMIC_SECTION("#" << i << ": " << row.what) {
      auto r = state_from_json(row.doc, DenyOptions{});
      REQUIRE_FALSE(r);
      CHECK_THAT(r.error().what, Contains("state:"));
    }
  }
}

TEST_CASE("agent::parse_cgroup2_mount finds the cgroup2 hierarchy in mountinfo",
          "[agent][cgroup]") {
  SECTION("a hybrid host mounts it at /sys/fs/cgroup/unified") {
    auto m = parse_cgroup2_mount(kHybrid);
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup/unified");
    CHECK(m->nft_prefix == "unified");
  }
  SECTION("a unified host mounts it at /sys/fs/cgroup") {
    auto m = parse_cgroup2_mount(kUnified);
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup");
    CHECK(m->nft_prefix == "");
  }
  SECTION("several optional fields before the separator are skipped") {
    auto m = parse_cgroup2_mount(
        "36 25 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 master:2 "
        "propagate_from:1 - cgroup2 cgroup2 rw\n");
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup");
    CHECK(m->nft_prefix == "");
  }
  SECTION("no optional fields at all is fine too") {
    auto m =
        parse_cgroup2_mount("36 25 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 none rw\n");
    REQUIRE(m);
    CHECK(m->nft_prefix == "unified");
  }
  SECTION("the first line is found without a trailing newline") {
    auto m = parse_cgroup2_mount("35 24 0:30 / /sys/fs/cgroup rw shared:9 - cgroup2 cgroup2 rw");
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup");
  }
  SECTION("a v1 hierarchy whose source is called cgroup2 is not taken") {
    auto m = parse_cgroup2_mount(
        "27 25 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup2 rw,name=systemd\n"
        "35 24 0:30 / /sys/fs/cgroup/unified rw shared:9 - cgroup2 cgroup2 rw\n");
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup/unified");
  }
  SECTION("a cgroup2 mounted later over the hybrid tree is the one, the hidden one is not") {
    // A container (or the systemd test) mounting its own cgroup2 at
    // /sys/fs/cgroup over the host's tmpfs with unified/ beneath it.
    auto m = parse_cgroup2_mount(std::string(kHybrid) + "78 50 0:37 /sluice-sd-1 /sys/fs/cgroup rw - cgroup2 none rw\n");
    REQUIRE(m);
    CHECK(m->mountpoint == "/sys/fs/cgroup");
    CHECK(m->nft_prefix == "");
  }
  SECTION("a cgroup2 covered by a later mount of anything else is not taken") {
    auto m = parse_cgroup2_mount(
        "35 24 0:30 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n"
        "80 24 0:40 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n");
    REQUIRE_FALSE(m);
  }
  SECTION("cgroup2 mounted outside /sys/fs/cgroup is an error nftables could not live with") {
    auto m =
        parse_cgroup2_mount("40 24 0:35 / /mnt/cg2 rw,relatime shared:20 - cgroup2 cgroup2 rw\n");
    REQUIRE_FALSE(m);
    CHECK_THAT(m.error().what, Contains("/mnt/cg2"));
    CHECK_THAT(m.error().what, Contains("outside /sys/fs/cgroup"));
  }
  SECTION("a sibling whose name merely starts with /sys/fs/cgroup is outside it") {
    auto m = parse_cgroup2_mount("40 24 0:35 / /sys/fs/cgroupx rw - cgroup2 cgroup2 rw\n");
    REQUIRE_FALSE(m);
    CHECK_THAT(m.error().what, Contains("outside /sys/fs/cgroup"));
  }
  SECTION("no cgroup2 mount is an error") {
    auto m = parse_cgroup2_mount(
        "22 28 0:20 / /sys rw shared:7 - sysfs sysfs rw\n"
        "27 25 0:25 / /sys/fs/cgroup/systemd rw shared:11 - cgroup cgroup rw,name=systemd\n");
    REQUIRE_FALSE(m);
    CHECK_THAT(m.error().what, Contains("no cgroup2 mount"));
  }
  SECTION("empty or truncated text is an error, not a crash") {
    CHECK_FALSE(parse_cgroup2_mount(""));
    CHECK_FALSE(parse_cgroup2_mount("\n\n"));
    CHECK_FALSE(parse_cgroup2_mount("35 24 0:30 / /sys/fs/cgroup rw shared:9 -"));
    CHECK_FALSE(parse_cgroup2_mount("- cgroup2"));
    CHECK_FALSE(parse_cgroup2_mount("35 24 0:30 / /sys/fs/cgroup rw - cgroup"));
  }
}

TEST_CASE("agent::valid_tenant_name admits only safe path components", "[agent][cgroup]") {
  struct Row {
    std::string name;
    bool valid;
  };
  const std::vector<Row> rows = {
      {"a", true},
      {"acme", true},
      {"acme-1", true},
      {"acme_2", true},
      {"0day", true},
      {"a-", true},
      {std::string(63, 'z'), true},
      {"", false},
      {std::string(64, 'z'), false},
      {"-acme", false},
      {"_acme", false},
      {"Acme", false},
      {"ACME", false},
      {"a/b", false},
      {"..", false},
      {".", false},
      {"a.b", false},
      {"a b", false},
      {"a\"b", false},
      {"a\nb", false},
      {"a\\b", false},
      {"a*", false},
      {std::string("a\0b", 3), false},
      {"b\xc3\xbc"
       "cher",
       false},
  };
  for (const Row& row : rows) {
    INFO("name \"" << row.name << "\" (" << row.name.size() << " bytes)");
    CHECK(valid_tenant_name(row.name) == row.valid);
  }
}
