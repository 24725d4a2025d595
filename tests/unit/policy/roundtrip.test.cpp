// Property test: random valid policies parse, and normalisation is a fixed
// point. Reproduce a failure with --rng-seed <the seed printed>.
#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sluice/policy/policy.h"

using namespace sluice::policy;

namespace {

constexpr int kPolicies = 2000;
constexpr unsigned kMaxEntries = 40;

const std::array<const char*, 6> kPunycodeLabels = {"xn--bcher-kva", "xn--mnchen-3ya",
                                                    "xn--fiqs8s",    "xn--wgbh1c",
                                                    "xn--e1afmkfd",  "xn--p1ai"};

// Writes random policy documents whose every entry is valid by construction,
// never by asking the library under test.
class PolicyGenerator {
 public:
  explicit PolicyGenerator(std::uint32_t seed) : rng_(seed) {}

  struct Generated {
    std::string text;
    bool allow_llm_egress = false;
    bool allow_prospecting = false;
    bool discovery_samples = false;
    bool has_allowlist = false;
    std::vector<std::string> entries;
  };

  Generated policy() {
    Generated g;
    g.allow_llm_egress = chance(50);
    g.allow_prospecting = chance(50);
    g.discovery_samples = chance(50);

    // 0: absent, 1: null, 2: empty, otherwise 1..kMaxEntries entries.
    const unsigned mode = below(10);
    g.has_allowlist = mode >= 2;
    if (mode >= 3) {
      const unsigned n = 1 + below(kMaxEntries);
      while (g.entries.size() < n) {
        if (!g.entries.empty() && chance(10)) {
          // A duplicate, possibly in another case: it must collapse.
          const std::string& earlier = g.entries[below(static_cast<unsigned>(g.entries.size()))];
          g.entries.push_back(chance(50) ? upper(earlier) : earlier);
        } else {
          g.entries.push_back(entry());
        }
      }
    }

    // Fields in a random order: the order must not matter.
    std::vector<std::pair<std::string, nlohmann::ordered_json>> fields = {
        {"allow_llm_egress", g.allow_llm_egress},
        {"allow_prospecting", g.allow_prospecting},
        {"discovery_samples", g.discovery_samples},
    };
    if (mode == 1) fields.emplace_back("egress_allowlist", nullptr);
    if (mode >= 2) fields.emplace_back("egress_allowlist", g.entries);
    std::shuffle(fields.begin(), fields.end(), rng_);
    nlohmann::ordered_json doc = nlohmann::ordered_json::object();
    for (auto& [key, value] : fields) doc[key] = std::move(value);
    g.text = chance(50) ? doc.dump() : doc.dump(2);
    return g;
  }

 private:
  unsigned below(unsigned n) { return std::uniform_int_distribution<unsigned>(0, n - 1)(rng_); }
  bool chance(unsigned percent) { return below(100) < percent; }

  std::string upper(std::string s) {
    for (char& c : s) {
      if (c >= 'a' && c <= 'z') c = static_cast<char>(c - 'a' + 'A');
    }
    return s;
  }

  std::string random_case(std::string s) {
    for (char& c : s) {
      if (c >= 'a' && c <= 'z' && chance(30)) c = static_cast<char>(c - 'a' + 'A');
    }
    return s;
  }

  std::string port_text() { return std::to_string(1 + below(65535)); }

  std::string entry() {
    switch (below(4)) {
      case 0: return host_entry(false);
      case 1: return host_entry(true);
      case 2: return ipv4_entry();
      default: return ipv6_entry();
    }
  }

  // An LDH label: letters, digits and inner hyphens, never "ab--".
  std::string label() {
    static constexpr char kAlnum[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static constexpr char kLdh[] = "abcdefghijklmnopqrstuvwxyz0123456789-";
    if (chance(3)) return kPunycodeLabels[below(kPunycodeLabels.size())];
    const unsigned length = chance(2) ? 63 : 1 + below(20);
    std::string s;
    for (unsigned i = 0; i < length; ++i) {
      const bool edge = i == 0 || i + 1 == length;
      s += edge ? kAlnum[below(36)] : kLdh[below(37)];
    }
    if (s.size() >= 4 && s[2] == '-' && s[3] == '-') s[3] = 'x';
    return s;
  }

  // A top-level label is never all digits.
  std::string top_label() {
    static constexpr char kAlpha[] = "abcdefghijklmnopqrstuvwxyz";
    std::string s(1, kAlpha[below(26)]);
    const unsigned more = below(6);
    for (unsigned i = 0; i < more; ++i) s += kAlpha[below(26)];
    return s;
  }

  // `min_labels` counts the top-level label.
  std::string host_name(unsigned min_labels) {
    std::string name = top_label();
    const unsigned labels = min_labels + below(4);
    for (unsigned i = 1; i < labels; ++i) {
      const std::string next = label();
      if (name.size() + 1 + next.size() > 200) break;  // well within 253 with "*."
      name = next + "." + name;
    }
    return name;
  }

  std::string host_entry(bool wildcard) {
    std::string text = wildcard ? "*." + host_name(2) : host_name(1);
    if (chance(10)) text += ".";
    text = random_case(text);
    if (chance(50)) text += ":" + port_text();
    return text;
  }

  static bool v4_denied(const std::array<unsigned, 4>& o, unsigned prefix) {
    if (prefix >= 8 && (o[0] == 0 || o[0] == 127)) return true;
    if (prefix >= 16 && o[0] == 169 && o[1] == 254) return true;
    return prefix == 32 && o[0] == 100 && o[1] == 100 && o[2] == 100 && o[3] == 200;
  }

  std::string ipv4_entry() {
    std::array<unsigned, 4> o{};
    unsigned prefix = 0;
    do {
      // Bias towards the neighbourhoods of the denied ranges.
      const unsigned hot[] = {0, 100, 127, 169, 10, 192};
      for (unsigned& x : o) x = below(256);
      if (chance(30)) o[0] = hot[below(6)];
      if (chance(20)) o[1] = chance(50) ? 254 : 100;
      prefix = chance(40) ? 32 : below(33);
      std::uint32_t v = (o[0] << 24) | (o[1] << 16) | (o[2] << 8) | o[3];
      if (prefix < 32) v &= prefix == 0 ? 0u : ~((1u << (32 - prefix)) - 1u);
      o = {v >> 24, (v >> 16) & 0xff, (v >> 8) & 0xff, v & 0xff};
    } while (v4_denied(o, prefix));

    const std::string quad = std::to_string(o[0]) + "." + std::to_string(o[1]) + "." +
                             std::to_string(o[2]) + "." + std::to_string(o[3]);
    const bool mapped = chance(15);
    const std::string addr = mapped ? (chance(50) ? "::ffff:" : "::FFFF:") + quad : quad;
    const unsigned len = mapped ? prefix + 96 : prefix;
    const bool with_len = prefix < 32 || chance(20);
    const std::string block = with_len ? addr + "/" + std::to_string(len) : addr;
    if (!chance(50)) return mapped && chance(50) ? "[" + block + "]" : block;
    const std::string port = port_text();
    if (!mapped) return block + ":" + port;
    if (with_len && chance(50)) return block + ":" + port;
    return "[" + block + "]:" + port;
  }

  // A global unicast (2000::/3) address, so never inside an always-denied
  // range; masked to a prefix of at least 3 it stays global unicast, and a
  // shorter prefix is wider than every denied range.
  std::string ipv6_entry() {
    std::array<unsigned, 8> w{};
    w[0] = 0x2000 + below(0x2000);
    for (std::size_t i = 1; i < 8; ++i) w[i] = chance(40) ? 0 : below(0x10000);
    const unsigned prefix = chance(40) ? 128 : below(129);
    for (unsigned bit = prefix; bit < 128; ++bit) w[bit / 16] &= ~(1u << (15 - bit % 16));

    const std::string addr = ipv6_text(w);
    const bool with_len = prefix < 128 || chance(20);
    const std::string block = with_len ? addr + "/" + std::to_string(prefix) : addr;
    if (!chance(50)) return chance(30) ? "[" + block + "]" : block;
    const std::string port = port_text();
    if (with_len && chance(50)) return block + ":" + port;
    return "[" + block + "]:" + port;
  }

  // Any RFC 4291 spelling: random case, optional leading zeros, and "::"
  // standing for a random run of zero groups (not necessarily the longest).
  std::string ipv6_text(const std::array<unsigned, 8>& w) {
    std::vector<std::string> groups;
    for (unsigned g : w) {
      char buf[8];
      std::snprintf(buf, sizeof buf, chance(20) ? "%04x" : "%x", g);
      groups.push_back(random_case(buf));
    }
    std::vector<std::pair<std::size_t, std::size_t>> runs;  // [begin, end)
    for (std::size_t i = 0; i < 8;) {
      if (w[i] != 0) {
        ++i;
        continue;
      }
      std::size_t j = i;
      while (j < 8 && w[j] == 0) ++j;
      runs.emplace_back(i, j);
      i = j;
    }
    std::string out;
    if (!runs.empty() && chance(80)) {
      const auto [begin, end] = runs[below(static_cast<unsigned>(runs.size()))];
      for (std::size_t i = 0; i < begin; ++i) out += (i ? ":" : "") + groups[i];
      out += "::";
      for (std::size_t i = end; i < 8; ++i) out += (i > end ? ":" : "") + groups[i];
      return out;
    }
    for (std::size_t i = 0; i < 8; ++i) out += (i ? ":" : "") + groups[i];
    return out;
  }

  std::mt19937 rng_;
};

std::string describe(const std::vector<Error>& errors) {
  std::string out;
  for (const Error& e : errors) {
    out += "\n  [" + std::string(to_string(e.code)) + "] " + e.to_string();
  }
  return out;
}

}  // namespace

TEST_CASE("policy::parse_policy normalisation is a fixed point for random valid policies",
          "[policy][roundtrip]") {
  const std::uint32_t seed = Catch::rngSeed();
  INFO("seed: " << seed << " (rerun with --rng-seed " << seed << ")");
  PolicyGenerator gen(seed);

  // Counted across all policies so one failing assertion does not flood the
  // output with thousands of passing ones, and so coverage can be checked.
  std::size_t entries_seen = 0, wildcards = 0, hosts = 0, v4 = 0, v6 = 0, ports = 0;
  std::size_t absent = 0, empty = 0, collapsed = 0;

  for (int i = 0; i < kPolicies; ++i) {
    const PolicyGenerator::Generated g = gen.policy();
    INFO("policy #" << i << ":\n" << g.text);

    auto parsed = parse_policy(g.text);
    INFO("errors:" << (parsed ? std::string() : describe(parsed.error())));
    REQUIRE(parsed);
    const TenantPolicy& p = *parsed;

    REQUIRE(p.allow_llm_egress == g.allow_llm_egress);
    REQUIRE(p.allow_prospecting == g.allow_prospecting);
    REQUIRE(p.discovery_samples == g.discovery_samples);
    REQUIRE(p.egress_allowlist.has_value() == g.has_allowlist);
    if (!g.has_allowlist) {
      ++absent;
    } else if (g.entries.empty()) {
      ++empty;
    }

    // Every generated entry is in the allowlist, which holds nothing else:
    // it is exactly the set of distinct entries, strictly sorted.
    if (g.has_allowlist) {
      const std::vector<Entry>& list = *p.egress_allowlist;
      REQUIRE(std::is_sorted(list.begin(), list.end()));
      REQUIRE(std::adjacent_find(list.begin(), list.end()) == list.end());
      std::vector<Entry> distinct;
      for (const std::string& text : g.entries) {
        INFO("entry: " << text);
        auto e = parse_entry(text, DenyOptions{});
        REQUIRE(e);
        REQUIRE(std::binary_search(list.begin(), list.end(), *e));
        distinct.push_back(*e);
      }
      std::sort(distinct.begin(), distinct.end());
      distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
      REQUIRE(distinct == list);
      collapsed += g.entries.size() - list.size();

      // Each canonical entry text parses back to an equal entry.
      for (const Entry& e : list) {
        const std::string canonical = e.to_string();
        INFO("canonical entry: " << canonical);
        auto again = parse_entry(canonical, DenyOptions{});
        REQUIRE(again);
        REQUIRE(*again == e);
        REQUIRE(again->to_string() == canonical);
        ++entries_seen;
        if (e.port) ++ports;
        if (const HostPattern* h = e.host()) {
          ++(h->wildcard ? wildcards : hosts);
        } else {
          ++(e.cidr()->addr.family == Family::v4 ? v4 : v6);
        }
      }
    }

    // Normalisation is a fixed point: what to_json writes parses to the
    // same policy and serialises to the same bytes.
    const std::string normal = to_json(p).dump();
    auto reparsed = parse_policy(normal);
    INFO("normal form: " << normal);
    INFO("errors:" << (reparsed ? std::string() : describe(reparsed.error())));
    REQUIRE(reparsed);
    REQUIRE(*reparsed == p);
    REQUIRE(to_json(*reparsed).dump() == normal);
  }

  // The generator really produced what the property is about.
  CHECK(entries_seen > static_cast<std::size_t>(kPolicies) * 5);
  CHECK(hosts > 1000);
  CHECK(wildcards > 1000);
  CHECK(v4 > 1000);
  CHECK(v6 > 1000);
  CHECK(ports > 1000);
  CHECK(absent > 100);
  CHECK(empty > 50);
  CHECK(collapsed > 100);
}
