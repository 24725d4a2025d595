#define TOML_EXCEPTIONS 0
#include "config.h"

#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include <toml++/toml.h>

#include "cgroup.h"
#include "sluice_abi.h"

namespace sluice::agent {
namespace {

using Known = std::set<std::string_view>;

Status check_keys(const toml::table& table, const Known& known, std::string_view prefix) {
  for (const auto& [key, value] : table) {
    if (!known.contains(key.str())) {
      return error("config: unknown key " + std::string(prefix) + std::string(key.str()));
    }
  }
  return {};
}

template <class T>
Status read(const toml::table& t, std::string_view key, std::string_view prefix, T& out) {
  const toml::node* n = t.get(key);
  if (!n) return {};
  auto v = n->value<T>();
  if (!v || !n->is<T>()) {
    return error("config: " + std::string(prefix) + std::string(key) + " has the wrong type");
  }
  out = *v;
  return {};
}

Status read_u32(const toml::table& t, std::string_view key, std::string_view prefix,
                std::uint32_t& out, std::uint32_t min, std::uint32_t max) {
  const toml::node* n = t.get(key);
  if (!n) return {};
  const auto v = n->value<std::int64_t>();
  if (!n->is_integer() || !v || *v < min || *v > max) {
    return error("config: " + std::string(prefix) + std::string(key) + " must be an integer from " +
                 std::to_string(min) + " to " + std::to_string(max));
  }
  out = static_cast<std::uint32_t>(*v);
  return {};
}

Status read_cidrs(const toml::table& t, std::string_view key, std::string_view prefix,
                  std::vector<policy::Cidr>& out) {
  const toml::node* n = t.get(key);
  if (!n) return {};
  const std::string name = std::string(prefix) + std::string(key);
  const toml::array* arr = n->as_array();
  if (!arr) return error("config: " + name + " must be an array of CIDR strings");
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto s = (*arr)[i].value<std::string>();
    if (!s) return error("config: " + name + "[" + std::to_string(i) + "] must be a string");
    auto c = policy::parse_cidr(*s);
    if (!c) return error("config: " + name + "[" + std::to_string(i) + "]: " + c.error().message);
    out.push_back(*c);
  }
  out = policy::normalize(std::move(out));
  return {};
}

Status read_dns(const toml::table& dns, AgentConfig& c) {
  if (auto s = check_keys(dns, {"servers", "static_hosts", "min_ttl_seconds", "max_ttl_seconds",
                                "timeout_ms"},
                          "dns.");
      !s) {
    return s;
  }
  if (const toml::node* n = dns.get("servers")) {
    const toml::array* arr = n->as_array();
    if (!arr) return error("config: dns.servers must be an array of \"addr\" or \"addr:port\"");
    for (std::size_t i = 0; i < arr->size(); ++i) {
      const std::string name = "dns.servers[" + std::to_string(i) + "]";
      const auto s = (*arr)[i].value<std::string>();
      if (!s) return error("config: " + name + " must be a string");
      auto e = policy::parse_entry(*s, policy::DenyOptions{.allow_loopback = true});
      if (!e || !e->cidr() || !e->cidr()->is_host()) {
        return error("config: " + name + " must be an IP address with an optional port");
      }
      c.dns_servers.push_back({e->cidr()->addr, e->port.value_or(53)});
    }
  }
  if (const toml::node* n = dns.get("static_hosts")) {
    const toml::table* hosts = n->as_table();
    if (!hosts) return error("config: dns.static_hosts must be a table of name = [addresses]");
    for (const auto& [key, value] : *hosts) {
      const std::string name = "dns.static_hosts.\"" + std::string(key.str()) + "\"";
      auto host = policy::canonical_hostname(key.str());
      if (!host) return error("config: " + name + ": " + host.error().message);
      const toml::array* arr = value.as_array();
      if (!arr || arr->empty()) return error("config: " + name + " must be a non-empty array");
      for (const toml::node& a : *arr) {
        const auto s = a.value<std::string>();
        auto ip = s ? policy::parse_ip(*s) : tl::unexpected(policy::Error{});
        if (!ip) return error("config: " + name + " holds a value that is not an IP address");
        c.static_hosts[*host].push_back(*ip);
      }
    }
  }
  if (auto s = read_u32(dns, "min_ttl_seconds", "dns.", c.min_ttl_s, 1, 86400); !s) return s;
  if (auto s = read_u32(dns, "max_ttl_seconds", "dns.", c.max_ttl_s, 1, 7 * 86400); !s) return s;
  if (auto s = read_u32(dns, "timeout_ms", "dns.", c.dns_timeout_ms, 100, 30000); !s) return s;
  if (c.min_ttl_s > c.max_ttl_s) {
    return error("config: dns.min_ttl_seconds exceeds dns.max_ttl_seconds");
  }
  return {};
}

// The subtree becomes cgroup paths, a quoted nftables string and, by its
// count of '/', the `socket cgroupv2 level` of the tenants chain: an empty
// or "." component would make that level wrong (the nft layer would then
// match no tenant socket), and a quote or newline would escape the string.
bool valid_cgroup_subtree(std::string_view path) {
  if (path.empty() || path.front() == '/' || path.find("..") != std::string_view::npos) {
    return false;
  }
  std::size_t start = 0;
  while (true) {
    const std::size_t slash = path.find('/', start);
    const std::string_view part = path.substr(
        start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
    if (part.empty() || part == ".") return false;
    for (char ch : part) {
      const bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-' ||
                      ch == '@' || ch == ':';
      if (!ok) return false;
    }
    if (slash == std::string_view::npos) return true;
    start = slash + 1;
  }
}

}  // namespace

std::string AgentConfig::pin_dir() const {
  return bpffs + "/" + instance + "/v" + std::to_string(SL_ABI_VERSION);
}

Result<AgentConfig> parse_config(std::string_view toml_text) {
  toml::parse_result parsed = toml::parse(toml_text);
  if (!parsed) {
    const auto& err = parsed.error();
    std::ostringstream msg;
    msg << "config: invalid TOML at line " << err.source().begin.line << ": "
        << err.description();
    return error(msg.str());
  }
  const toml::table& t = parsed.table();
  AgentConfig c;
  if (auto s = check_keys(t, {"instance", "cgroup_subtree", "allowed_peer_uids", "runtime_dir",
                              "bpffs", "broker_path", "broker_uid", "broker_gid",
                              "allow_loopback", "tamper_check_ms", "dns", "network"},
                          "");
      !s) {
    return tl::unexpected(s.error());
  }
  Status s;
  if (s = read(t, "instance", "", c.instance); !s) return tl::unexpected(s.error());
  if (!valid_tenant_name(c.instance) || c.instance.size() > 24) {
    return error("config: instance must be 1-24 characters of a-z, 0-9, '-', '_'");
  }
  c.cgroup_subtree = c.instance;
  if (s = read(t, "cgroup_subtree", "", c.cgroup_subtree); !s) return tl::unexpected(s.error());
  if (!valid_cgroup_subtree(c.cgroup_subtree)) {
    return error("config: cgroup_subtree must be a relative path without '..', of names made of "
                 "letters, digits, '.', '_', '-', '@' and ':'");
  }
  c.runtime_dir = "/run/" + c.instance;
  if (s = read(t, "runtime_dir", "", c.runtime_dir); !s) return tl::unexpected(s.error());
  if (s = read(t, "bpffs", "", c.bpffs); !s) return tl::unexpected(s.error());
  if (s = read(t, "broker_path", "", c.broker_path); !s) return tl::unexpected(s.error());
  if (c.broker_path.empty()) {
    // Beside the agent binary, as installed and as built.
    char self[4096] = {};
    const ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
    const std::string exe = n > 0 ? std::string(self, static_cast<std::size_t>(n)) : "";
    const std::string dir = exe.substr(0, exe.rfind('/') + 1);
    c.broker_path = ::access((dir + "sluice-broker").c_str(), X_OK) == 0
                        ? dir + "sluice-broker"
                        : dir + "../libexec/sluice/sluice-broker";
  }
  if (s = read(t, "allow_loopback", "", c.allow_loopback); !s) return tl::unexpected(s.error());
  const std::pair<const char*, const std::string*> dirs[] = {
      {"runtime_dir", &c.runtime_dir}, {"bpffs", &c.bpffs}};
  for (const auto& [name, value] : dirs) {
    if (value->empty() || value->front() != '/' || value->find("..") != std::string::npos) {
      return error(std::string("config: ") + name + " must be an absolute path without '..'");
    }
  }
  if (s = read_u32(t, "broker_uid", "", c.broker_uid, 1, 0xfffffffe); !s) return tl::unexpected(s.error());
  if (s = read_u32(t, "broker_gid", "", c.broker_gid, 1, 0xfffffffe); !s) return tl::unexpected(s.error());
  if (s = read_u32(t, "tamper_check_ms", "", c.tamper_check_ms, 50, 600000); !s) {
    return tl::unexpected(s.error());
  }
  if (const toml::node* n = t.get("allowed_peer_uids")) {
    const toml::array* arr = n->as_array();
    if (!arr) return error("config: allowed_peer_uids must be an array of integers");
    for (const toml::node& u : *arr) {
      const auto v = u.value<std::int64_t>();
      if (!u.is_integer() || !v || *v < 0 || *v > 0xfffffffe) {
        return error("config: allowed_peer_uids holds a value that is not a uid");
      }
      c.allowed_peer_uids.push_back(static_cast<std::uint32_t>(*v));
    }
  }
  if (const toml::node* n = t.get("dns")) {
    if (!n->as_table()) return error("config: dns must be a table");
    if (s = read_dns(*n->as_table(), c); !s) return tl::unexpected(s.error());
  }
  if (const toml::node* n = t.get("network")) {
    const toml::table* net = n->as_table();
    if (!net) return error("config: network must be a table");
    if (s = check_keys(*net, {"internal_networks", "always_deny"}, "network."); !s) {
      return tl::unexpected(s.error());
    }
    if (s = read_cidrs(*net, "internal_networks", "network.", c.internal_networks); !s) {
      return tl::unexpected(s.error());
    }
    if (s = read_cidrs(*net, "always_deny", "network.", c.extra_deny); !s) {
      return tl::unexpected(s.error());
    }
  }
  return c;
}

Result<AgentConfig> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return errno_error("config: open " + path);
  std::stringstream text;
  text << in.rdbuf();
  if (text.str().size() > 1024 * 1024) return error("config: " + path + " is larger than 1 MiB");
  return parse_config(text.str());
}

}  // namespace sluice::agent
