#include "nft_text.h"

#include <algorithm>
#include <map>
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

}  // namespace

std::string nft_generation_comment(std::uint64_t generation) {
  return "sluice generation " + std::to_string(generation);
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
    std::vector<std::string> p4, p6, b4, b6;
    for (const NftPin& p : r.pins) {
      (p.addr.family == policy::Family::v4 ? p4 : p6).push_back(element(p.addr, p.port));
    }
    for (const NftBlock& b : normalize_blocks(r.blocks)) {
      (b.block.addr.family == policy::Family::v4 ? b4 : b6).push_back(element(b.block, b.port));
    }
    emit_set(out, set_name(r.id, "p", policy::Family::v4), "ipv4_addr . inet_service", false, p4);
    emit_set(out, set_name(r.id, "p", policy::Family::v6), "ipv6_addr . inet_service", false, p6);
    emit_set(out, set_name(r.id, "b", policy::Family::v4), "ipv4_addr . inet_service", true, b4);
    emit_set(out, set_name(r.id, "b", policy::Family::v6), "ipv6_addr . inet_service", true, b6);
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
      out << "    meta l4proto { tcp, udp } " << match << " . th dport @" << set_name(r.id, "p", f)
          << " accept\n";
      out << "    meta l4proto { tcp, udp } " << match << " . th dport @" << set_name(r.id, "b", f)
          << " accept\n";
    }
    out << "    " << kReject << "\n  }\n";
  }
  out << "}\n";
  return out.str();
}

std::string nft_pin_elements(const std::string& table, std::uint32_t ruleset,
                             const std::vector<NftPin>& pins, bool add) {
  std::vector<std::string> v4, v6;
  for (const NftPin& p : pins) {
    (p.addr.family == policy::Family::v4 ? v4 : v6).push_back(element(p.addr, p.port));
  }
  std::ostringstream out;
  const char* verb = add ? "add" : "delete";
  const auto emit = [&](const std::vector<std::string>& list, policy::Family f) {
    if (list.empty()) return;
    out << verb << " element inet " << table << " " << set_name(ruleset, "p", f) << " { ";
    for (std::size_t i = 0; i < list.size(); ++i) out << (i ? ", " : "") << list[i];
    out << " }\n";
  };
  emit(v4, policy::Family::v4);
  emit(v6, policy::Family::v6);
  return out.str();
}

}  // namespace sluice::agent
