#include "state.h"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>

#include "cgroup.h"

namespace sluice::agent {

nlohmann::json to_json(const AgentState& s) {
  nlohmann::json tenants = nlohmann::json::object();
  for (const auto& [name, t] : s.tenants) {
    policy::EffectiveRules rules;
    nlohmann::json rulesets = nlohmann::json::object(), pins = nlohmann::json::object();
    for (policy::Purpose p : policy::kPurposes) {
      const PurposeState& ps = t.of(p);
      rules.of(p) = ps.rules;
      rules.of(p).decisions.clear();
      const std::string key(policy::to_string(p));
      rulesets[key] = ps.ruleset;
      auto& list = pins[key] = nlohmann::json::array();
      for (const auto& [k, pin] : ps.pins) {
        list.push_back({{"addr", k.addr.to_string()}, {"port", k.port}, {"host", pin.host},
                        {"expires_ns", pin.expires_ns}});
      }
    }
    tenants[name] = {{"version", t.version},
                     {"rulesets", rulesets},
                     {"rules", policy::to_json(rules)},
                     {"pins", pins}};
  }
  return {{"generation", s.generation}, {"next_ruleset", s.next_ruleset}, {"tenants", tenants}};
}

Result<AgentState> state_from_json(const nlohmann::json& doc, const policy::DenyOptions& deny) {
  // The file is the agent's own; a malformed one is refused whole, never
  // half-trusted. (Only root can write the runtime directory.)
  AgentState s;
  if (!doc.is_object() || !doc.contains("generation") || !doc.contains("tenants")) {
    return error("state: malformed");
  }
  const auto u64 = [](const nlohmann::json& v) -> std::optional<std::uint64_t> {
    if (!v.is_number_unsigned()) return std::nullopt;
    return v.get<std::uint64_t>();
  };
  auto gen = u64(doc["generation"]);
  auto next = u64(doc.value("next_ruleset", nlohmann::json()));
  if (!gen || !next || *next == 0 || *next > 0xffffffffu || !doc["tenants"].is_object()) {
    return error("state: malformed header");
  }
  s.generation = *gen;
  s.next_ruleset = static_cast<std::uint32_t>(*next);
  // Each ruleset id belongs to one (tenant, purpose): a shared id would let
  // one tenant's sockets use another's blocks and pins.
  std::set<std::uint32_t> rulesets_seen;
  for (const auto& [name, t] : doc["tenants"].items()) {
    // The name becomes cgroup paths and nftables strings: only names that
    // apply would have accepted.
    if (!valid_tenant_name(name)) return error("state: a tenant name is malformed");
    TenantState ts;
    // Checked before any lookup: a const operator[] on a missing key is
    // undefined behaviour, value() on a non-object throws.
    if (!t.is_object() || !u64(t.value("version", nlohmann::json())) ||
        !t.contains("rulesets") || !t["rulesets"].is_object() || !t.contains("pins") ||
        !t["pins"].is_object()) {
      return error("state: tenant " + name + " malformed");
    }
    ts.version = *u64(t["version"]);
    auto rules = policy::rules_from_json(t.value("rules", nlohmann::json()), deny);
    if (!rules) return error("state: tenant " + name + " rules: " + rules.error().front().to_string());
    for (policy::Purpose p : policy::kPurposes) {
      const std::string key(policy::to_string(p));
      PurposeState& ps = ts.of(p);
      ps.rules = rules->of(p);
      auto rs = u64(t["rulesets"].value(key, nlohmann::json()));
      if (!rs || *rs == 0 || *rs >= s.next_ruleset ||
          !rulesets_seen.insert(static_cast<std::uint32_t>(*rs)).second) {
        return error("state: tenant " + name + " ruleset malformed");
      }
      ps.ruleset = static_cast<std::uint32_t>(*rs);
      const nlohmann::json& pins = t["pins"].value(key, nlohmann::json::array());
      if (!pins.is_array()) return error("state: tenant " + name + " pins malformed");
      for (const nlohmann::json& pin : pins) {
        if (!pin.is_object() || !pin.contains("host") || !pin["host"].is_string()) {
          return error("state: tenant " + name + " pin malformed");
        }
        const nlohmann::json addr_text = pin.value("addr", nlohmann::json());
        auto addr = addr_text.is_string() ? policy::parse_ip(addr_text.get<std::string>())
                                          : tl::unexpected(policy::Error{});
        auto port = u64(pin.value("port", nlohmann::json()));
        auto exp = u64(pin.value("expires_ns", nlohmann::json()));
        if (!addr || !port || *port == 0 || *port > 65535 || !exp) {
          return error("state: tenant " + name + " pin malformed");
        }
        ps.pins[{*addr, static_cast<std::uint16_t>(*port)}] = {pin["host"].get<std::string>(), *exp};
      }
    }
    s.tenants[name] = std::move(ts);
  }
  return s;
}

Status save_state(const std::string& path, const AgentState& state) {
  const std::string tmp = path + ".tmp";
  const std::string text = to_json(state).dump();
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return errno_error("open " + tmp);
  std::size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int saved = errno;
      ::close(fd);
      errno = saved;
      return errno_error("write " + tmp);
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fsync(fd) != 0) {
    const int saved = errno;
    ::close(fd);
    ::unlink(tmp.c_str());
    errno = saved;
    return errno_error("fsync " + tmp);
  }
  if (::close(fd) != 0) return errno_error("close " + tmp);
  if (::rename(tmp.c_str(), path.c_str()) != 0) return errno_error("rename " + tmp);
  // The rename itself must survive a crash for the saved state to.
  const std::string dir = parent_directory(path);
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return errno_error("open " + dir);
  const int synced = ::fsync(dfd);
  ::close(dfd);
  if (synced != 0) return errno_error("fsync " + dir);
  return {};
}

Result<AgentState> load_state(const std::string& path, const policy::DenyOptions& deny) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return AgentState{};
    return errno_error("open " + path);
  }
  std::stringstream text;
  text << in.rdbuf();
  auto doc = nlohmann::json::parse(text.str(), nullptr, false);
  if (doc.is_discarded()) return error("state: " + path + " is not JSON");
  return state_from_json(doc, deny);
}

}  // namespace sluice::agent
