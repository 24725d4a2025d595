#include "nft_text.h"

#include <algorithm>
#include <iterator>
#include <map>
#include <tuple>
#include <set>
#include <sstream>

namespace sluice::agent {
namespace {

constexpr char kReject[] = "reject with icmpx admin-prohibited";

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

void emit_set(std::ostringstream& out, const std::string& name, const char* type, bool interval,
              const std::vector<std::string>& elements) {
  out << "  set " << name << " {\n    type " << type << "\n";
  if (interval) out << "    flags interval\n";
  if (!elements.empty()) {
    out << "    elements = { ";
    for (std::size_t i = 0; i < elements.size(); ++i) out << (i ? ", " : "") << elements[i];
    out << " }\n";
  }
  out << "  }\n";
}

std::string element(const policy::IpAddr& a, std::uint16_t port) {
  return a.to_string() + " . " + std::to_string(port);
}

std::string element(const policy::Cidr& c, std::uint16_t port) {
  return c.to_string() + " . " + std::to_string(port);
}

std::string set_name(std::uint32_t ruleset, const char* kind, policy::Family f) {
  return "r" + std::to_string(ruleset) + "_" + kind + (f == policy::Family::v4 ? "4" : "6");
}

// A block of one address goes to a hash set ("a"), wider ones to an
// interval set ("b"): the kernel's range sets (pipapo) remove an element
// in time linear in the set's size (~2.5 ms at 1000 entries on this
// kernel), hash sets in constant time, and most static entries are
// single addresses.
const char* block_kind(const policy::Cidr& c) {
  return c.prefix == c.addr.bits() ? "a" : "b";
}

// The sets of a ruleset: kind, and whether it is an interval set.
constexpr std::pair<const char*, bool> kSetKinds[] = {{"p", false}, {"a", false}, {"b", true}};

}  // namespace

std::string nft_generation_comment(std::uint64_t generation) {
  return kGenerationPrefix + std::to_string(generation);
}

std::optional<std::uint64_t> parse_generation(std::string_view listing) {
  const std::string marker = std::string("comment \"") + kGenerationPrefix;
  const auto at = listing.find(marker);
  if (at == std::string_view::npos) return std::nullopt;
  std::uint64_t gen = 0;
  std::size_t i = at + marker.size(), digits = 0;
  for (; i < listing.size() && listing[i] >= '0' && listing[i] <= '9' && digits < 19; ++i, ++digits) {
    gen = gen * 10 + static_cast<std::uint64_t>(listing[i] - '0');
  }
  if (digits == 0 || i >= listing.size() || listing[i] != '"') return std::nullopt;
  return gen;
}

std::vector<NftBlock> normalize_blocks(std::vector<NftBlock> blocks) {
  std::map<std::uint16_t, std::vector<policy::Cidr>> by_port;
  for (const NftBlock& b : blocks) by_port[b.port].push_back(b.block);
  std::vector<NftBlock> out;
  for (auto& [port, list] : by_port) {
    for (const policy::Cidr& c : policy::normalize(std::move(list))) out.push_back({c, port});
  }
  return out;
}

std::string nft_replace_table(const NftTable& t) {
  std::ostringstream out;
  out << "table inet " << t.name << "\ndelete table inet " << t.name << "\n";
  out << "table inet " << t.name << " {\n  comment " << quoted(nft_generation_comment(t.generation))
      << "\n";

  std::vector<std::string> deny4, deny6;
  for (const policy::Cidr& c : policy::normalize(t.deny)) {
    (c.addr.family == policy::Family::v4 ? deny4 : deny6).push_back(c.to_string());
  }
  emit_set(out, "deny4", "ipv4_addr", true, deny4);
  emit_set(out, "deny6", "ipv6_addr", true, deny6);

  for (const NftRuleset& r : t.rulesets) {
    std::map<std::string, std::vector<std::string>> elements;
    for (const NftPin& p : r.pins) {
      elements[set_name(r.id, "p", p.addr.family)].push_back(element(p.addr, p.port));
    }
    for (const NftBlock& b : normalize_blocks(r.blocks)) {
      const bool exact = b.block.prefix == b.block.addr.bits();
      elements[set_name(r.id, block_kind(b.block), b.block.addr.family)].push_back(
          exact ? element(b.block.addr, b.port) : element(b.block, b.port));
    }
    for (const auto& [kind, interval] : kSetKinds) {
      for (policy::Family f : {policy::Family::v4, policy::Family::v6}) {
        const std::string name = set_name(r.id, kind, f);
        emit_set(out, name,
                 f == policy::Family::v4 ? "ipv4_addr . inet_service" : "ipv6_addr . inet_service",
                 interval, elements[name]);
      }
    }
  }

  out << "  chain output {\n    type filter hook output priority filter; policy accept;\n"
      << "    socket cgroupv2 level " << t.tenants_level << " " << quoted(t.tenants_path)
      << " jump tenants\n  }\n";

  // Established flows pass: pins expire without cutting live connections;
  // revocation cuts them explicitly (SOCK_DESTROY). A new flow must match
  // its socket's ruleset; a socket in an unknown cgroup matches none.
  out << "  chain tenants {\n    ct state established,related accept\n"
      << "    ip daddr @deny4 " << kReject << "\n    ip6 daddr @deny6 " << kReject << "\n";
  for (const NftRuleset& r : t.rulesets) {
    out << "    socket cgroupv2 level " << r.level << " " << quoted(r.cgroup_path) << " jump r"
        << r.id << "\n";
  }
  out << "    " << kReject << "\n  }\n";

  for (const NftRuleset& r : t.rulesets) {
    out << "  chain r" << r.id << " {\n";
    for (policy::Family f : {policy::Family::v4, policy::Family::v6}) {
      const char* match = f == policy::Family::v4 ? "ip daddr" : "ip6 daddr";
      for (const auto& [kind, interval] : kSetKinds) {
        out << "    meta l4proto { tcp, udp } " << match << " . th dport @" << set_name(r.id, kind, f)
            << " accept\n";
      }
    }
    out << "    " << kReject << "\n  }\n";
  }
  out << "}\n";
  return out.str();
}

namespace {

bool block_less(const NftBlock& a, const NftBlock& b) {
  return std::tie(a.block, a.port) < std::tie(b.block, b.port);
}
using BlockSet = std::set<NftBlock, decltype(&block_less)>;

// Every element of every set of a ruleset, by set name.
std::map<std::string, BlockSet> elements_of(const NftRuleset& r) {
  std::map<std::string, BlockSet> out;
  for (policy::Family f : {policy::Family::v4, policy::Family::v6}) {
    for (const auto& [kind, interval] : kSetKinds) {
      out.emplace(set_name(r.id, kind, f), BlockSet(&block_less));
    }
  }
  for (const NftPin& p : r.pins) {
    out.at(set_name(r.id, "p", p.addr.family)).insert({policy::Cidr::host(p.addr), p.port});
  }
  for (const NftBlock& b : normalize_blocks(r.blocks)) {
    out.at(set_name(r.id, block_kind(b.block), b.block.addr.family)).insert(b);
  }
  return out;
}

bool same_structure(const NftTable& a, const NftTable& b) {
  if (a.name != b.name || a.tenants_path != b.tenants_path || a.tenants_level != b.tenants_level ||
      policy::normalize(a.deny) != policy::normalize(b.deny) || a.rulesets.size() != b.rulesets.size()) {
    return false;
  }
  for (std::size_t i = 0; i < a.rulesets.size(); ++i) {
    const NftRuleset& x = a.rulesets[i];
    const NftRuleset& y = b.rulesets[i];
    if (x.id != y.id || x.cgroup_path != y.cgroup_path || x.level != y.level) return false;
  }
  return true;
}

}  // namespace

std::string pin_set_name(std::uint32_t ruleset, policy::Family family) {
  return set_name(ruleset, "p", family);
}

std::optional<std::vector<SetDelta>> element_deltas(const NftTable& from, const NftTable& to) {
  if (!same_structure(from, to)) return std::nullopt;
  std::vector<SetDelta> out;
  for (std::size_t i = 0; i < to.rulesets.size(); ++i) {
    const auto old_sets = elements_of(from.rulesets[i]);
    const auto new_sets = elements_of(to.rulesets[i]);
    for (const auto& [set, new_elems] : new_sets) {
      const BlockSet& old_elems = old_sets.at(set);
      SetDelta d{set, set.find("_b") != std::string::npos, {}, {}};
      std::set_difference(old_elems.begin(), old_elems.end(), new_elems.begin(), new_elems.end(),
                          std::back_inserter(d.removed), block_less);
      std::set_difference(new_elems.begin(), new_elems.end(), old_elems.begin(), old_elems.end(),
                          std::back_inserter(d.added), block_less);
      if (!d.removed.empty() || !d.added.empty()) out.push_back(std::move(d));
    }
  }
  return out;
}

std::string nft_element_key(const policy::IpAddr& addr, std::uint16_t port) {
  const std::size_t len = addr.family == policy::Family::v4 ? 4 : 16;
  std::string key(reinterpret_cast<const char*>(addr.bytes.data()), len);
  key += static_cast<char>(port >> 8);
  key += static_cast<char>(port & 0xff);
  key += std::string(2, '\0');
  return key;
}

policy::IpAddr last_address(const policy::Cidr& block) {
  policy::IpAddr a = block.addr;
  for (unsigned i = block.prefix; i < a.bits(); ++i) {
    a.bytes[i / 8] |= static_cast<std::uint8_t>(1u << (7 - i % 8));
  }
  return a;
}

}  // namespace sluice::agent
