// The nftables text the agent sends: one atomic table replacement and pin
// element batches. Checked as text, without a kernel.
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "../policy/test_support.h"
#include "nft_text.h"

using namespace sluice::agent;
using namespace sluice::policy;
using Catch::Matchers::Contains;
using Catch::Matchers::EndsWith;
using Catch::Matchers::StartsWith;
using sluice::policy::testing::cidr;
using sluice::policy::testing::ip;

namespace {

constexpr char kReject[] = "reject with icmpx admin-prohibited";

NftTable sample_table() {
  NftTable t;
  t.name = "sluice";
  t.generation = 42;
  t.tenants_path = "sluice/tenants";
  t.tenants_level = 2;
  t.deny = {cidr("169.254.0.0/16"),  cidr("fe80::/10"),   cidr("100.100.100.200"),
            cidr("169.254.169.254"), cidr("127.0.0.0/8"), cidr("::1")};

  NftRuleset acme_llm;
  acme_llm.id = 7;
  acme_llm.cgroup_path = "sluice/tenants/acme/llm";
  acme_llm.level = 4;
  acme_llm.blocks = {{cidr("10.0.0.0/8"), 443},
                     {cidr("10.1.0.0/16"), 443},
                     {cidr("10.1.0.0/16"), 8080},
                     {cidr("2001:db8::/32"), 443},
                     {cidr("192.0.2.7"), 443},
                     {cidr("10.2.3.4/32"), 8443},
                     {cidr("2001:db8:1::9/128"), 443},
                     {cidr("2001:db9::1"), 443}};
  acme_llm.pins = {{ip("203.0.113.7"), 443}, {ip("2001:db8::7"), 443}};

  NftRuleset acme_embeddings;
  acme_embeddings.id = 8;
  acme_embeddings.cgroup_path = "sluice/tenants/acme/embeddings";
  acme_embeddings.level = 4;

  t.rulesets = {acme_llm, acme_embeddings};
  return t;
}

// The text of "  <kind> <name> {" up to and including its closing "  }".
std::string block_of(const std::string& text, const std::string& kind, const std::string& name) {
  const std::string open = "\n  " + kind + " " + name + " {\n";
  const auto start = text.find(open);
  if (start == std::string::npos) {
    FAIL("no " << kind << " " << name << " in:\n" << text);
    return "";
  }
  const auto end = text.find("\n  }\n", start + 1);
  REQUIRE(end != std::string::npos);
  return text.substr(start + 1, end + 4 - start);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start < text.size()) {
    auto nl = text.find('\n', start);
    if (nl == std::string::npos) nl = text.size();
    out.push_back(text.substr(start, nl - start));
    start = nl + 1;
  }
  return out;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
    ++n;
  }
  return n;
}

// What may stand between the braces of an element list: IP literals,
// prefix lengths, ports and separators. No letter beyond hex digits, so
// never a name nft would resolve.
bool only_literals(const std::string& elements) {
  for (char ch : elements) {
    const bool ok = (ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f') || ch == ':' ||
                    ch == '.' || ch == '/' || ch == ' ' || ch == ',' || ch == '{' || ch == '}';
    if (!ok) return false;
  }
  return true;
}

// The "{ ... }" part of every line that lists set elements.
std::vector<std::string> element_lists(const std::string& text) {
  std::vector<std::string> out;
  for (const std::string& line : lines_of(text)) {
    const bool listing = line.find("elements = ") != std::string::npos ||
                         line.starts_with("add element ") || line.starts_with("delete element ");
    if (!listing) continue;
    const auto brace = line.find('{');
    REQUIRE(brace != std::string::npos);
    out.push_back(line.substr(brace));
  }
  return out;
}

}  // namespace

TEST_CASE("agent::nft_replace_table replaces the whole table in one transaction", "[agent][nft]") {
  const std::string text = nft_replace_table(sample_table());

  SECTION("it creates, deletes, then defines the table, so the delete cannot fail") {
    CHECK_THAT(text,
               StartsWith("table inet sluice\ndelete table inet sluice\ntable inet sluice {\n"));
    CHECK_THAT(text, EndsWith("\n}\n"));
    CHECK(count_of(text, "delete table") == 1);
  }
  SECTION("the table carries the generation as its comment") {
    CHECK(nft_generation_comment(42) == "sluice generation 42");
    CHECK_THAT(text, Contains("  comment \"sluice generation 42\"\n"));
  }
  SECTION("the deny sets hold the normalised always-denied blocks, split by family") {
    CHECK(block_of(text, "set", "deny4") ==
          "  set deny4 {\n    type ipv4_addr\n    flags interval\n"
          "    elements = { 100.100.100.200, 127.0.0.0/8, 169.254.0.0/16 }\n  }\n");
    CHECK(block_of(text, "set", "deny6") ==
          "  set deny6 {\n    type ipv6_addr\n    flags interval\n"
          "    elements = { ::1, fe80::/10 }\n  }\n");
  }
  SECTION("the output hook sends the tenants subtree to the tenants chain") {
    CHECK(block_of(text, "chain", "output") ==
          "  chain output {\n    type filter hook output priority filter; policy accept;\n"
          "    socket cgroupv2 level 2 \"sluice/tenants\" jump tenants\n  }\n");
  }
}

TEST_CASE("agent::nft_replace_table gives each ruleset six sets and a chain", "[agent][nft]") {
  const std::string text = nft_replace_table(sample_table());

  SECTION("pins are exact address and port pairs, split by family") {
    CHECK(block_of(text, "set", "r7_p4") ==
          "  set r7_p4 {\n    type ipv4_addr . inet_service\n"
          "    elements = { 203.0.113.7 . 443 }\n  }\n");
    CHECK(block_of(text, "set", "r7_p6") ==
          "  set r7_p6 {\n    type ipv6_addr . inet_service\n"
          "    elements = { 2001:db8::7 . 443 }\n  }\n");
  }
  SECTION("blocks of one address are exact elements of hash sets") {
    CHECK(block_of(text, "set", "r7_a4") ==
          "  set r7_a4 {\n    type ipv4_addr . inet_service\n"
          "    elements = { 192.0.2.7 . 443, 10.2.3.4 . 8443 }\n  }\n");
    // 2001:db8:1::9 lies in 2001:db8::/32 on the same port: normalised away.
    CHECK(block_of(text, "set", "r7_a6") ==
          "  set r7_a6 {\n    type ipv6_addr . inet_service\n"
          "    elements = { 2001:db9::1 . 443 }\n  }\n");
  }
  SECTION("wider blocks are interval sets, normalised per port") {
    CHECK(block_of(text, "set", "r7_b4") ==
          "  set r7_b4 {\n    type ipv4_addr . inet_service\n    flags interval\n"
          "    elements = { 10.0.0.0/8 . 443, 10.1.0.0/16 . 8080 }\n  }\n");
    CHECK(block_of(text, "set", "r7_b6") ==
          "  set r7_b6 {\n    type ipv6_addr . inet_service\n    flags interval\n"
          "    elements = { 2001:db8::/32 . 443 }\n  }\n");
  }
  SECTION("an empty set has no elements line") {
    CHECK(block_of(text, "set", "r8_p4") ==
          "  set r8_p4 {\n    type ipv4_addr . inet_service\n  }\n");
    CHECK(block_of(text, "set", "r8_p6") ==
          "  set r8_p6 {\n    type ipv6_addr . inet_service\n  }\n");
    CHECK(block_of(text, "set", "r8_a4") ==
          "  set r8_a4 {\n    type ipv4_addr . inet_service\n  }\n");
    CHECK(block_of(text, "set", "r8_b4") ==
          "  set r8_b4 {\n    type ipv4_addr . inet_service\n    flags interval\n  }\n");
    CHECK(block_of(text, "set", "r8_b6") ==
          "  set r8_b6 {\n    type ipv6_addr . inet_service\n    flags interval\n  }\n");
  }
  SECTION("each ruleset's chain accepts its sets and rejects everything else") {
    for (const std::string id : {"7", "8"}) {
      const std::string r = "r" + id;
      const std::string match = "    meta l4proto { tcp, udp } ";
      CHECK(block_of(text, "chain", r) ==
            "  chain " + r + " {\n" +
                match + "ip daddr . th dport @" + r + "_p4 accept\n" +
                match + "ip daddr . th dport @" + r + "_a4 accept\n" +
                match + "ip daddr . th dport @" + r + "_b4 accept\n" +
                match + "ip6 daddr . th dport @" + r + "_p6 accept\n" +
                match + "ip6 daddr . th dport @" + r + "_a6 accept\n" +
                match + "ip6 daddr . th dport @" + r + "_b6 accept\n" +
                "    " + kReject + "\n  }\n");
    }
  }
  SECTION("there are exactly the deny sets and six sets per ruleset") {
    CHECK(count_of(text, "\n  set ") == 2 + 6 * 2);
    CHECK(count_of(text, "\n  chain ") == 2 + 2);
  }
}

TEST_CASE("agent::nft_replace_table judges new flows by the socket's cgroup", "[agent][nft]") {
  const std::string text = nft_replace_table(sample_table());
  const std::string tenants = block_of(text, "chain", "tenants");
  const std::vector<std::string> rules = lines_of(tenants);

  SECTION("established flows are accepted before anything else") {
    REQUIRE(rules.size() >= 2);
    CHECK(rules[1] == "    ct state established,related accept");
  }
  SECTION("always-denied destinations are rejected before any ruleset") {
    REQUIRE(rules.size() >= 4);
    CHECK(rules[2] == std::string("    ip daddr @deny4 ") + kReject);
    CHECK(rules[3] == std::string("    ip6 daddr @deny6 ") + kReject);
  }
  SECTION("each ruleset is reached by its cgroup path at its level") {
    REQUIRE(rules.size() >= 6);
    CHECK(rules[4] == "    socket cgroupv2 level 4 \"sluice/tenants/acme/llm\" jump r7");
    CHECK(rules[5] == "    socket cgroupv2 level 4 \"sluice/tenants/acme/embeddings\" jump r8");
  }
  SECTION("a socket in no known cgroup falls through to a reject") {
    REQUIRE(rules.size() == 8);
    CHECK(rules[6] == std::string("    ") + kReject);
    CHECK(rules[7] == "  }");
  }
  SECTION("with no rulesets, the tenants chain rejects every new flow") {
    NftTable t = sample_table();
    t.rulesets.clear();
    const std::string empty = nft_replace_table(t);
    CHECK(block_of(empty, "chain", "tenants") ==
          std::string("  chain tenants {\n    ct state established,related accept\n") +
              "    ip daddr @deny4 " + kReject + "\n    ip6 daddr @deny6 " + kReject + "\n    " +
              kReject + "\n  }\n");
    CHECK_THAT(empty, !Contains("set r"));
  }
  SECTION("a hybrid hierarchy's prefix is part of the path, not of the level") {
    NftTable t = sample_table();
    t.tenants_path = "unified/sluice/tenants";
    t.rulesets.resize(1);
    t.rulesets[0].cgroup_path = "unified/sluice/tenants/acme/llm";
    const std::string hybrid = nft_replace_table(t);
    CHECK_THAT(hybrid, Contains("socket cgroupv2 level 2 \"unified/sluice/tenants\" jump tenants"));
    CHECK_THAT(hybrid,
               Contains("socket cgroupv2 level 4 \"unified/sluice/tenants/acme/llm\" jump r7"));
  }
}

TEST_CASE("agent::normalize_blocks keeps only the widest block per port", "[agent][nft]") {
  SECTION("a block inside another on the same port is dropped") {
    const auto out = normalize_blocks({{cidr("10.1.0.0/16"), 443}, {cidr("10.0.0.0/8"), 443}});
    REQUIRE(out.size() == 1);
    CHECK(out[0].block == cidr("10.0.0.0/8"));
    CHECK(out[0].port == 443);
  }
  SECTION("the same block on different ports is kept for each port") {
    const auto out = normalize_blocks({{cidr("10.0.0.0/8"), 8080}, {cidr("10.0.0.0/8"), 443}});
    REQUIRE(out.size() == 2);
    CHECK(out[0].block == cidr("10.0.0.0/8"));
    CHECK(out[0].port == 443);
    CHECK(out[1].block == cidr("10.0.0.0/8"));
    CHECK(out[1].port == 8080);
  }
  SECTION("a narrow block on another port survives a wide one") {
    const auto out = normalize_blocks(
        {{cidr("10.0.0.0/8"), 443}, {cidr("10.1.2.3"), 22}, {cidr("10.1.0.0/16"), 443}});
    REQUIRE(out.size() == 2);
    CHECK(out[0].block == cidr("10.1.2.3"));
    CHECK(out[0].port == 22);
    CHECK(out[1].block == cidr("10.0.0.0/8"));
    CHECK(out[1].port == 443);
  }
  SECTION("duplicates collapse and families stay apart") {
    const auto out = normalize_blocks({{cidr("2001:db8::/32"), 443},
                                       {cidr("10.0.0.0/8"), 443},
                                       {cidr("2001:db8::/32"), 443},
                                       {cidr("2001:db8:1::/48"), 443}});
    REQUIRE(out.size() == 2);
    CHECK(out[0].block == cidr("10.0.0.0/8"));
    CHECK(out[1].block == cidr("2001:db8::/32"));
  }
  SECTION("nothing in, nothing out") { CHECK(normalize_blocks({}).empty()); }
}

TEST_CASE("agent::element_deltas change elements only when the structure is unchanged",
          "[agent][nft]") {
  const NftTable before = sample_table();

  SECTION("identical tables give no change") {
    auto d = element_deltas(before, before);
    REQUIRE(d);
    CHECK(d->empty());
  }
  SECTION("a new pin and a removed block land in their own sets") {
    NftTable after = before;
    after.rulesets[0].pins.push_back({ip("198.51.100.9"), 443});
    const NftBlock gone = after.rulesets[0].blocks.front();
    after.rulesets[0].blocks.erase(after.rulesets[0].blocks.begin());
    auto d = element_deltas(before, after);
    REQUIRE(d);
    bool pin_added = false, block_removed = false;
    for (const SetDelta& s : *d) {
      if (s.set == pin_set_name(before.rulesets[0].id, Family::v4)) {
        CHECK_FALSE(s.interval);
        pin_added = s.added.size() == 1 && s.added[0].block == Cidr::host(ip("198.51.100.9"));
      }
      if (s.interval && s.removed.size() == 1 && s.removed[0].block == gone.block) block_removed = true;
    }
    CHECK(pin_added);
    CHECK(block_removed);
  }
  SECTION("a changed single-address block moves within the hash set, not a range set") {
    NftTable after = before;
    for (NftBlock& b : after.rulesets[0].blocks) {
      if (b.block == cidr("192.0.2.7")) b.block = cidr("192.0.2.8");
    }
    auto d = element_deltas(before, after);
    REQUIRE(d);
    REQUIRE(d->size() == 1);
    CHECK((*d)[0].set == "r7_a4");
    CHECK_FALSE((*d)[0].interval);
    REQUIRE((*d)[0].removed.size() == 1);
    REQUIRE((*d)[0].added.size() == 1);
    CHECK((*d)[0].removed[0].block == cidr("192.0.2.7"));
    CHECK((*d)[0].added[0].block == cidr("192.0.2.8"));
  }
  SECTION("a block widened from one address to a range changes sets") {
    NftTable after = before;
    for (NftBlock& b : after.rulesets[0].blocks) {
      if (b.block == cidr("192.0.2.7")) b.block = cidr("192.0.2.0/24");
    }
    auto d = element_deltas(before, after);
    REQUIRE(d);
    REQUIRE(d->size() == 2);
    bool left_hash = false, joined_range = false;
    for (const SetDelta& s : *d) {
      left_hash = left_hash || (s.set == "r7_a4" && s.removed.size() == 1 && s.added.empty());
      joined_range = joined_range || (s.set == "r7_b4" && s.interval && s.added.size() == 1 &&
                                      s.added[0].block == cidr("192.0.2.0/24"));
    }
    CHECK(left_hash);
    CHECK(joined_range);
  }
  SECTION("another ruleset, cgroup or deny list needs a whole new table") {
    NftTable other = before;
    other.rulesets[0].cgroup_path += "x";
    CHECK_FALSE(element_deltas(before, other));
    NftTable more = before;
    more.rulesets.push_back(more.rulesets[0]);
    more.rulesets.back().id = 99;
    CHECK_FALSE(element_deltas(before, more));
    NftTable deny = before;
    deny.deny.push_back(cidr("203.0.113.0/24"));
    CHECK_FALSE(element_deltas(before, deny));
  }
}

TEST_CASE("agent::nft_element_key lays out addr . inet_service as the kernel does",
          "[agent][nft]") {
  SECTION("IPv4: 4 address bytes, then the port in a 4-byte register") {
    CHECK(nft_element_key(ip("10.1.2.3"), 443) ==
          std::string("\x0a\x01\x02\x03\x01\xbb\x00\x00", 8));
  }
  SECTION("IPv6: 16 address bytes, then the port register") {
    const std::string k = nft_element_key(ip("2001:db8::1"), 8443);
    REQUIRE(k.size() == 20);
    CHECK(k.substr(0, 4) == std::string("\x20\x01\x0d\xb8", 4));
    CHECK(k.substr(16) == std::string("\x20\xfb\x00\x00", 4));
  }
  SECTION("a block's range ends at its last address") {
    CHECK(last_address(cidr("10.0.0.0/8")) == ip("10.255.255.255"));
    CHECK(last_address(cidr("192.0.2.7")) == ip("192.0.2.7"));
    CHECK(last_address(cidr("2001:db8::/32")) == ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"));
  }
}

TEST_CASE("agent::nft text never carries a host name, only IP literals", "[agent][nft]") {
  // Rulesets built as the agent builds them: static blocks from compiled
  // rules, pins from resolved answers. The names in the rules must never
  // reach nft, which would resolve them itself, blocking and unpinned.
  const EndpointsConfig config = testing::config_of(R"({
    "internal_networks": ["10.0.0.0/8", "fd00::/8"],
    "internal_domains": ["*.corp.example"],
    "endpoints": {
      "llm": ["https://api.anthropic.com", "http://ollama.corp.example:11434",
              "http://10.1.2.3:8000", "https://[2001:db8::10]"],
      "embeddings": ["https://api.openai.com", "10.9.0.0/16:8080", "[fd00:1::/64]:9000"],
      "prospecting": ["https://api.apollo.io", "*.clearbit.com:443"]}})");
  const TenantPolicy policy = testing::policy_of(
      R"({"allow_llm_egress": true, "allow_prospecting": true, "discovery_samples": false})");
  const EffectiveRules rules = compile(policy, config);

  NftTable t = sample_table();
  t.rulesets.clear();
  std::vector<std::string> names;
  std::uint32_t id = 1;
  for (Purpose p : kPurposes) {
    NftRuleset r;
    r.id = id++;
    r.cgroup_path = "sluice/tenants/acme/" + std::string(to_string(p));
    r.level = 4;
    for (const CidrRule& c : rules.of(p).cidrs) r.blocks.push_back({c.block, c.port});
    std::uint8_t last = 1;
    for (const HostRule& h : rules.of(p).hosts) {
      names.push_back(h.pattern.name);
      r.pins.push_back({IpAddr::v4(203, 0, 113, last++), h.port});
      r.pins.push_back({ip("2001:db8::" + std::to_string(last++)), h.port});
    }
    t.rulesets.push_back(std::move(r));
  }
  REQUIRE(names.size() >= 5);

  const std::string table = nft_replace_table(t);
  const std::string batches;  // element changes travel as binary netlink, not text

  SECTION("every element list holds only address and port characters") {
    const auto lists = element_lists(table + batches);
    CHECK(lists.size() >= 10);
    for (const std::string& list : lists) {
      INFO(list);
      CHECK(only_literals(list));
    }
  }
  SECTION("no name from the rules appears anywhere in the text") {
    for (const std::string& name : names) {
      INFO(name);
      CHECK_THAT(table, !Contains(name));
      CHECK_THAT(batches, !Contains(name));
    }
  }
  SECTION("the static blocks of the rules are present as literals") {
    CHECK_THAT(table, Contains("10.1.2.3 . 8000"));
    CHECK_THAT(table, Contains("2001:db8::10 . 443"));
    CHECK_THAT(table, Contains("10.9.0.0/16 . 8080"));
    CHECK_THAT(table, Contains("fd00:1::/64 . 9000"));
  }
}

TEST_CASE("agent::parse_generation reads back the table comment and nothing else", "[agent][nft]") {
  SECTION("the comment the table carries round-trips") {
    CHECK(parse_generation(nft_replace_table(sample_table())) == 42u);
    CHECK(parse_generation("table inet x {\n\tcomment \"" + nft_generation_comment(0) + "\"\n}") == 0u);
  }
  SECTION("no comment, another comment, or a damaged one is no generation") {
    CHECK_FALSE(parse_generation("table inet x {\n}"));
    CHECK_FALSE(parse_generation("table inet x {\n\tcomment \"hand made\"\n}"));
    CHECK_FALSE(parse_generation("comment \"sluice generation \""));
    CHECK_FALSE(parse_generation("comment \"sluice generation 12x\""));
  }
  SECTION("an absurdly long number is refused, not wrapped") {
    CHECK_FALSE(parse_generation("comment \"sluice generation 99999999999999999999999\""));
  }
}
