// Names: the agent resolves through a real DNS server (dnsmasq on
// loopback) and pins every answer in both layers before replying.
#include <chrono>
#include <fstream>
#include <sstream>
#include <thread>

#include <catch2/catch.hpp>

#include "harness.h"

using namespace sluice::testing;

namespace {

constexpr char kOpen[] =
    R"({"allow_llm_egress":true,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";
constexpr char kClosed[] =
    R"({"allow_llm_egress":false,"allow_prospecting":false,"discovery_samples":false,"egress_allowlist":null})";

nlohmann::json resolve(Instance& inst, const std::string& host, std::uint16_t port) {
  return inst.call({{"op", "resolve"}, {"tenant", "t1"}, {"purpose", "llm"}, {"host", host}, {"port", port}});
}

}  // namespace

TEST_CASE("kernel: names are resolved by the agent and pinned before the answer returns", "[netns]") {
  Listener allowed;
  const std::string p = allowed.port_text();
  Dnsmasq dns({"--address=/llm.test/127.0.0.1", "--address=/llm6.test/::1",
               "--host-record=target.test,127.0.0.1", "--cname=alias.test,target.test", "--address=/meta.test/169.254.169.254",
               "--address=/evil.test/127.0.0.1"},
              /*ttl_s=*/1);
  InstanceOptions options;
  options.dns_servers = {dns.server()};
  options.min_ttl_s = 1;
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":[
      "llm.test:)" + p + R"(", "llm6.test:)" + p + R"(", "alias.test:)" + p +
                          R"(", "meta.test:)" + p + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kOpen, eps)["ok"] == true);
  const std::string cg = inst.cgroup("t1", "llm");

  SECTION("an A answer is pinned: the very next connect succeeds") {
    CHECK(probe(cg, {"tcp", "127.0.0.1", p}).out == "errno 1 EPERM");
    auto r = resolve(inst, "llm.test", allowed.port());
    REQUIRE(r["ok"] == true);
    CHECK(r["addresses"] == nlohmann::json::array({"127.0.0.1"}));
    CHECK(dns.was_queried("llm.test"));
    CHECK(probe(cg, {"tcp", "127.0.0.1", p}).out == "ok");
    // Pinned in nftables too: the element is in the ruleset's pin set.
    const RunResult sets = run({"/usr/sbin/nft", "list", "table", "inet", inst.name()});
    CHECK(sets.out.find("127.0.0.1 . " + p) != std::string::npos);
    // Pinned for the name's port only.
    Listener other;
    CHECK(probe(cg, {"tcp", "127.0.0.1", other.port_text()}).out == "errno 1 EPERM");
  }
  SECTION("an AAAA answer is pinned too") {
    auto r = resolve(inst, "llm6.test", allowed.port());
    REQUIRE(r["ok"] == true);
    CHECK(r["addresses"] == nlohmann::json::array({"::1"}));
    CHECK(probe(cg, {"tcp", "::1", p}).out == "ok");
  }
  SECTION("a CNAME chain is followed to its addresses (the target need not be on the policy)") {
    auto r = resolve(inst, "alias.test", allowed.port());
    INFO(r.dump());
    REQUIRE(r["ok"] == true);
    CHECK(r["addresses"] == nlohmann::json::array({"127.0.0.1"}));
    CHECK(r["cnames"] == nlohmann::json::array({"target.test"}));
    CHECK(probe(cg, {"tcp", "127.0.0.1", p}).out == "ok");
  }
  SECTION("pins expire with the record's TTL") {
    REQUIRE(resolve(inst, "llm.test", allowed.port())["ok"] == true);
    REQUIRE(probe(cg, {"tcp", "127.0.0.1", p}).out == "ok");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(6);
    bool expired = false;
    while (!expired && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      expired = probe(cg, {"tcp", "127.0.0.1", p}).out == "errno 1 EPERM";
    }
    CHECK(expired);
    // The hooks refuse an expired pin at once; the agent removes it from
    // both layers on its next pass.
    bool removed = false;
    for (int i = 0; i < 50 && !removed; ++i) {
      removed = inst.call({{"op", "status"}})["counters"]["pins"] == 0;
      if (!removed) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    CHECK(removed);
  }
  SECTION("a name off the policy is refused without being resolved") {
    auto r = resolve(inst, "evil.test", allowed.port());
    CHECK(r["ok"] == false);
    CHECK(r["code"] == "not_allowed");
    CHECK_FALSE(dns.was_queried("evil.test"));
    CHECK(probe(cg, {"tcp", "127.0.0.1", p}).out == "errno 1 EPERM");
  }
  SECTION("an allowed name on another port is refused") {
    CHECK(resolve(inst, "llm.test", 8443)["code"] == "not_allowed");
  }
  SECTION("an allowed name resolving into an always-denied range is refused and not pinned") {
    auto r = resolve(inst, "meta.test", allowed.port());
    CHECK(r["ok"] == false);
    CHECK(r["code"] == "not_allowed");
    CHECK(inst.call({{"op", "status"}})["counters"]["pins"] == 0);
  }
}

TEST_CASE("kernel: with allow_llm_egress=false a name resolving outside is refused at pin time",
          "[netns]") {
  Listener allowed;
  const std::string p = allowed.port_text();
  Dnsmasq dns({"--address=/llm.test/127.0.0.1", "--address=/inside.test/10.1.2.3"}, 60);
  InstanceOptions options;
  options.dns_servers = {dns.server()};
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":[
      "llm.test:)" + p + R"(", "inside.test:)" + p + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kClosed, eps)["ok"] == true);
  CHECK(resolve(inst, "llm.test", allowed.port())["code"] == "not_allowed");
  auto inside = resolve(inst, "inside.test", allowed.port());
  CHECK(inside["ok"] == true);
  CHECK(inside["addresses"] == nlohmann::json::array({"10.1.2.3"}));
}

TEST_CASE("kernel: the agent's own internal networks bound what the rules call internal", "[netns]") {
  // mcpd's endpoints file calls all of 10/8 internal; the host's operator
  // told the agent only 10.1/16 is. A confined name is pinned only inside both.
  Listener allowed;
  const std::string p = allowed.port_text();
  Dnsmasq dns({"--address=/inside.test/10.1.2.3", "--address=/edge.test/10.9.9.9"}, 60);
  InstanceOptions options;
  options.dns_servers = {dns.server()};
  options.internal_networks = {"10.1.0.0/16"};
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":[
      "inside.test:)" + p + R"(", "edge.test:)" + p + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kClosed, eps)["ok"] == true);
  CHECK(resolve(inst, "inside.test", allowed.port())["ok"] == true);
  auto edge = resolve(inst, "edge.test", allowed.port());
  CHECK(edge["ok"] == false);
  CHECK(edge["code"] == "not_allowed");
  CHECK(inst.call({{"op", "status"}})["counters"]["pins"] == 1);
  // An open policy names no scope: the bound does not apply to it.
  REQUIRE(inst.apply("t1", 2, kOpen, eps)["ok"] == true);
  CHECK(resolve(inst, "edge.test", allowed.port())["ok"] == true);
}

TEST_CASE("kernel: a pin the agent's narrowed internal networks forbid is gone after a restart", "[netns]") {
  Listener allowed;
  const std::string p = allowed.port_text();
  Dnsmasq dns({"--address=/inside.test/10.1.2.3"}, 600);
  InstanceOptions options;
  options.dns_servers = {dns.server()};
  options.internal_networks = {"10.0.0.0/8"};
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":["inside.test:)" + p + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kClosed, eps)["ok"] == true);
  REQUIRE(resolve(inst, "inside.test", allowed.port())["ok"] == true);
  REQUIRE(inst.call({{"op", "status"}})["counters"]["pins"] == 1);
  // The operator narrows the agent's internal networks and restarts it:
  // the saved pin (TTL 600 s) is not brought back.
  inst.kill9();
  std::string config;
  {
    std::ifstream in(inst.config_path());
    std::stringstream text;
    text << in.rdbuf();
    config = text.str();
  }
  const std::string wide = R"(internal_networks = ["10.0.0.0/8"])";
  const auto at = config.find(wide);
  REQUIRE(at != std::string::npos);
  config.replace(at, wide.size(), R"(internal_networks = ["10.2.0.0/16"])");
  {
    std::ofstream out(inst.config_path(), std::ios::trunc);
    out << config;
  }
  inst.start();
  CHECK(inst.call({{"op", "status"}})["counters"]["pins"] == 0);
  CHECK(resolve(inst, "inside.test", allowed.port())["ok"] == false);
}

TEST_CASE("kernel: an expired pin leaves nftables even when its batch fails on an element already gone",
          "[netns]") {
  // One name with an A and an AAAA answer: two pins expiring together, in
  // one nftables transaction. The v6 element is deleted behind the agent's
  // back, so removing both fails as a whole; the v4 one must not stay in
  // the table (nftables alone would go on allowing it).
  Listener allowed;
  const std::string p = allowed.port_text();
  Dnsmasq dns({"--host-record=both.test,127.0.0.1,::1"}, /*ttl_s=*/1);
  InstanceOptions options;
  options.dns_servers = {dns.server()};
  options.min_ttl_s = 1;
  options.tamper_check_ms = 200;
  Instance inst(options);
  inst.start();
  const std::string eps = R"({"internal_networks":["10.0.0.0/8"],"endpoints":{"llm":["both.test:)" + p + R"("]}})";
  REQUIRE(inst.apply("t1", 1, kOpen, eps)["ok"] == true);
  auto r = resolve(inst, "both.test", allowed.port());
  REQUIRE(r["ok"] == true);
  REQUIRE(r["addresses"].size() == 2);
  const auto ruleset = inst.call({{"op", "status"}})["tenants"]["t1"]["purposes"]["llm"]["ruleset"].get<std::uint32_t>();
  const std::string v6_set = "r" + std::to_string(ruleset) + "_p6";
  REQUIRE(run({"/usr/sbin/nft", "delete", "element", "inet", inst.name(), v6_set, "{ ::1 . " + p + " }"}).status == 0);
  const auto in_table = [&] {
    return run({"/usr/sbin/nft", "list", "table", "inet", inst.name()}).out.find("127.0.0.1 . " + p) != std::string::npos;
  };
  REQUIRE(in_table());
  bool gone = false;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(8);
  while (!gone && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    gone = inst.call({{"op", "status"}})["counters"]["pins"] == 0 && !in_table();
  }
  CHECK(gone);
  // Repaired, both layers are reported enforcing again.
  const auto layers = inst.call({{"op", "status"}})["layers"];
  CHECK(layers["bpf"] == "enforcing");
  CHECK(layers["nftables"] == "enforcing");
}
