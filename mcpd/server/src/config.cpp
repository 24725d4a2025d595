#define TOML_EXCEPTIONS 0
#include "config.h"

#include <arpa/inet.h>

#include <fstream>
#include <functional>
#include <map>
#include <sstream>

#include <boost/asio/ip/address.hpp>
#include <toml++/toml.h>

namespace sluice::mcpd {
namespace {

// One key of the file: where it lives and how it is read into the config.
using Reader = std::function<Status(const toml::node&, const std::string& name, McpdConfig&)>;

Reader integer(std::int64_t min, std::int64_t max, std::function<void(McpdConfig&, std::int64_t)> set) {
  return [=](const toml::node& n, const std::string& name, McpdConfig& c) -> Status {
    const auto v = n.value<std::int64_t>();
    if (!n.is_integer() || !v || *v < min || *v > max) {
      return fail("config: " + name + " must be an integer from " + std::to_string(min) + " to " +
                  std::to_string(max));
    }
    set(c, *v);
    return {};
  };
}

Reader number(double min, double max, std::function<void(McpdConfig&, double)> set) {
  return [=](const toml::node& n, const std::string& name, McpdConfig& c) -> Status {
    const auto v = n.value<double>();
    // Written so that NaN fails too (every comparison with it is false).
    if (!(n.is_floating_point() || n.is_integer()) || !v || !(*v >= min && *v <= max)) {
      return fail("config: " + name + " must be a number from " + std::to_string(min) + " to " +
                  std::to_string(max));
    }
    set(c, *v);
    return {};
  };
}

Reader text(std::function<void(McpdConfig&, std::string)> set, bool absolute_path = false) {
  return [=](const toml::node& n, const std::string& name, McpdConfig& c) -> Status {
    const auto v = n.value<std::string>();
    if (!n.is_string() || !v) return fail("config: " + name + " must be a string");
    if (absolute_path && (v->empty() || v->front() != '/')) {
      return fail("config: " + name + " must be an absolute path");
    }
    set(c, *v);
    return {};
  };
}

Reader boolean(std::function<void(McpdConfig&, bool)> set) {
  return [=](const toml::node& n, const std::string& name, McpdConfig& c) -> Status {
    if (!n.is_boolean()) return fail("config: " + name + " must be true or false");
    set(c, *n.value<bool>());
    return {};
  };
}

const std::map<std::string, std::map<std::string, Reader>>& schema() {
  using C = McpdConfig;
  static const std::map<std::string, std::map<std::string, Reader>> s = {
      {"server",
       {{"listen_address", [](const toml::node& n, const std::string& name, C& c) -> Status {
           const auto v = n.value<std::string>();
           in6_addr probe{};
           if (!v || (inet_pton(AF_INET, v->c_str(), &probe) != 1 && inet_pton(AF_INET6, v->c_str(), &probe) != 1)) {
             return fail("config: " + name + " must be an IPv4 or IPv6 address");
           }
           c.listen_address = *v;
           return {};
         }},
        {"listen_port", integer(0, 65535, [](C& c, std::int64_t v) { c.listen_port = static_cast<std::uint16_t>(v); })},
        {"threads", integer(1, 64, [](C& c, std::int64_t v) { c.threads = static_cast<unsigned>(v); })},
        {"max_connections", integer(1, 100000, [](C& c, std::int64_t v) { c.max_connections = static_cast<std::size_t>(v); })},
        {"max_connections_per_client", integer(1, 100000, [](C& c, std::int64_t v) { c.max_connections_per_client = static_cast<std::size_t>(v); })},
        {"header_limit_bytes", integer(1024, 65536, [](C& c, std::int64_t v) { c.header_limit = static_cast<std::size_t>(v); })},
        {"body_limit_bytes", integer(1024, 16 << 20, [](C& c, std::int64_t v) { c.body_limit = static_cast<std::size_t>(v); })},
        {"request_timeout_ms", integer(100, 600000, [](C& c, std::int64_t v) { c.request_timeout = std::chrono::milliseconds(v); })},
        {"idle_timeout_ms", integer(100, 3600000, [](C& c, std::int64_t v) { c.idle_timeout = std::chrono::milliseconds(v); })},
        {"trusted_proxies", [](const toml::node& n, const std::string& name, C& c) -> Status {
           const toml::array* arr = n.as_array();
           if (!arr || arr->size() > 64) return fail("config: " + name + " must be an array of at most 64 addresses");
           c.trusted_proxies.clear();
           for (std::size_t i = 0; i < arr->size(); ++i) {
             const auto v = (*arr)[i].value<std::string>();
             boost::system::error_code ec;
             const auto a = v ? boost::asio::ip::make_address(*v, ec) : boost::asio::ip::address();
             if (!v || ec) return fail("config: " + name + "[" + std::to_string(i) + "] must be an IPv4 or IPv6 address");
             c.trusted_proxies.push_back(a.to_string());
           }
           return {};
         }},
        {"allowed_origins", [](const toml::node& n, const std::string& name, C& c) -> Status {
           const toml::array* arr = n.as_array();
           if (!arr) return fail("config: " + name + " must be an array of origins");
           c.allowed_origins.clear();
           for (std::size_t i = 0; i < arr->size(); ++i) {
             const auto o = (*arr)[i].value<std::string>();
             if (!o || !(o->starts_with("https://") || o->starts_with("http://")) || o->back() == '/') {
               return fail("config: " + name + "[" + std::to_string(i) + "] must look like https://host[:port]");
             }
             c.allowed_origins.push_back(*o);
           }
           return {};
         }}}},
      {"tls",
       {{"cert_file", text([](C& c, std::string v) { c.cert_file = std::move(v); }, true)},
        {"key_file", text([](C& c, std::string v) { c.key_file = std::move(v); }, true)}}},
      {"storage",
       {{"data_dir", text([](C& c, std::string v) { c.data_dir = std::move(v); }, true)},
        {"runtime_dir", text([](C& c, std::string v) { c.runtime_dir = std::move(v); }, true)},
        {"journal", boolean([](C& c, bool v) { c.journal = v; })},
        {"audit_group_wait_us", integer(0, 10000, [](C& c, std::int64_t v) { c.audit_group_wait = std::chrono::microseconds(v); })},
        {"audit_anchors", boolean([](C& c, bool v) { c.audit_anchors = v; })},
        {"audit_anchor_interval_ms", integer(10, 60000, [](C& c, std::int64_t v) { c.audit_anchor_interval = std::chrono::milliseconds(v); })},
        {"admin_uids", [](const toml::node& n, const std::string& name, C& c) -> Status {
           const toml::array* arr = n.as_array();
           if (!arr || arr->empty()) return fail("config: " + name + " must be a non-empty array of uids");
           c.admin_uids.clear();
           for (std::size_t i = 0; i < arr->size(); ++i) {
             const auto v = (*arr)[i].value<std::int64_t>();
             if (!v || *v < 0 || *v > 0xfffffffe) return fail("config: " + name + "[" + std::to_string(i) + "] must be a uid");
             c.admin_uids.push_back(static_cast<std::uint32_t>(*v));
           }
           return {};
         }}}},
      {"auth",
       {{"lockout_failures", integer(1, 1000, [](C& c, std::int64_t v) { c.lockout_failures = static_cast<unsigned>(v); })},
        {"lockout_window_seconds", integer(1, 86400, [](C& c, std::int64_t v) { c.lockout_window = std::chrono::seconds(v); })}}},
      {"limits",
       {{"tenant_rate", number(0.01, 1e6, [](C& c, double v) { c.tenant_rate = v; })},
        {"tenant_burst", number(1, 1e7, [](C& c, double v) { c.tenant_burst = v; })},
        {"admin_rate", number(0.01, 1e5, [](C& c, double v) { c.admin_rate = v; })},
        {"admin_burst", number(1, 1e6, [](C& c, double v) { c.admin_burst = v; })},
        {"admin_light_rate", number(0.01, 1e5, [](C& c, double v) { c.admin_light_rate = v; })},
        {"admin_light_burst", number(1, 1e6, [](C& c, double v) { c.admin_light_burst = v; })},
        {"max_sessions", integer(1, 1000000, [](C& c, std::int64_t v) { c.max_sessions = static_cast<std::size_t>(v); })},
        {"session_idle_seconds", integer(1, 86400 * 7, [](C& c, std::int64_t v) { c.session_idle = std::chrono::seconds(v); })},
        {"stream_hold_seconds", integer(1, 3600, [](C& c, std::int64_t v) { c.stream_hold = std::chrono::seconds(v); })},
        {"stream_retry_ms", integer(10, 60000, [](C& c, std::int64_t v) { c.stream_retry = std::chrono::milliseconds(v); })},
        {"streams_per_key", integer(1, 100000, [](C& c, std::int64_t v) { c.streams_per_key = static_cast<std::size_t>(v); })},
        {"streams_per_tenant", integer(1, 100000, [](C& c, std::int64_t v) { c.streams_per_tenant = static_cast<std::size_t>(v); })},
        {"keys_per_user", integer(1, 100000, [](C& c, std::int64_t v) { c.keys_per_user = static_cast<std::size_t>(v); })},
        {"answer_memory_mb", integer(16, 65536, [](C& c, std::int64_t v) { c.answers.total = static_cast<std::size_t>(v) << 20; })},
        // From 1: a share under the largest answer (about 8 MiB) refuses large answers outright.
        {"answer_memory_per_tenant_mb", integer(1, 65536, [](C& c, std::int64_t v) { c.answers.per_tenant = static_cast<std::size_t>(v) << 20; })}}},
      {"query",
       {{"max_rows", integer(1, 1000000, [](C& c, std::int64_t v) { c.max_rows = static_cast<std::size_t>(v); })},
        {"timeout_ms", integer(1, 600000, [](C& c, std::int64_t v) { c.query_timeout = std::chrono::milliseconds(v); })},
        {"temp_memory_mb", integer(1, 768, [](C& c, std::int64_t v) { c.query_temp_memory = static_cast<std::size_t>(v) << 20; })},
        {"schema_memory_mb", integer(1, 256, [](C& c, std::int64_t v) { c.query_schema_memory = static_cast<std::size_t>(v) << 20; })}}},
      {"agent",
       {{"socket", text([](C& c, std::string v) { c.agent_socket = std::move(v); }, true)},
        {"endpoints_file", text([](C& c, std::string v) { c.endpoints_file = std::move(v); }, true)},
        {"timeout_ms", integer(100, 60000, [](C& c, std::int64_t v) { c.agent_timeout = std::chrono::milliseconds(v); })},
        {"retry_ms", integer(100, 3600000, [](C& c, std::int64_t v) { c.agent_retry = std::chrono::milliseconds(v); })},
        {"allow_loopback", boolean([](C& c, bool v) { c.allow_loopback = v; })}}},
      {"testing", {{"fixtures", boolean([](C& c, bool v) { c.fixtures = v; })}}},
  };
  return s;
}

}  // namespace

Result<McpdConfig> parse_config(const std::string& text) {
  toml::parse_result parsed = toml::parse(text);
  if (!parsed) {
    std::ostringstream msg;
    msg << "config: " << parsed.error().description() << " at line " << parsed.error().source().begin.line;
    return fail(msg.str());
  }
  const toml::table& root = parsed.table();
  McpdConfig c;
  for (const auto& [section, value] : root) {
    const std::string sname(section.str());
    auto known = schema().find(sname);
    if (known == schema().end()) return fail("config: unknown section [" + sname + "]");
    const toml::table* t = value.as_table();
    if (!t) return fail("config: " + sname + " must be a table");
    for (const auto& [key, node] : *t) {
      const std::string kname(key.str());
      auto reader = known->second.find(kname);
      if (reader == known->second.end()) return fail("config: unknown key " + sname + "." + kname);
      if (auto s = reader->second(node, sname + "." + kname, c); !s) return tl::unexpected(s.error());
    }
  }
  if (c.tenant_burst < 1 || c.admin_burst < 1) return fail("config: limits bursts must be at least 1");
  // Policies compile against the endpoints: one without the other would
  // push rules nobody configured.
  if (c.agent_socket.empty() != c.endpoints_file.empty()) {
    return fail("config: agent.socket and agent.endpoints_file go together");
  }
  return c;
}

Result<McpdConfig> load_config(const std::string& path) {
  std::ifstream in(path);
  if (!in) return fail("config: cannot read " + path);
  std::stringstream text;
  text << in.rdbuf();
  return parse_config(text.str());
}

}  // namespace sluice::mcpd
