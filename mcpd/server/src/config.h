// sluice-mcpd's configuration (TOML). Every key is checked; an unknown key
// or a bad value refuses start-up with a message naming the key.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "answer_budget.h"
#include "audit_chain.h"
#include "status.h"

namespace sluice::mcpd {

struct McpdConfig {
  // [server]
  std::string listen_address = "127.0.0.1";
  std::uint16_t listen_port = 8443;
  unsigned threads = 2;
  std::size_t max_connections = 1024;
  std::size_t max_connections_per_client = 64;  // per address (an IPv6 client's /64)
  std::size_t header_limit = 16 * 1024;
  std::size_t body_limit = 1024 * 1024;
  std::chrono::milliseconds request_timeout{30000};  // reading one request
  std::chrono::milliseconds idle_timeout{60000};     // keep-alive between requests
  std::vector<std::string> allowed_origins;          // exact "scheme://host[:port]"
  // Reverse proxies whose X-Forwarded-For names the client (normalised
  // addresses). Lockout, audit and /metrics then see the client, not the
  // proxy; the per-client connection cap still counts the proxy.
  std::vector<std::string> trusted_proxies;
  // [tls]
  std::string cert_file, key_file;
  // [storage]
  std::string data_dir = "/var/lib/sluice";
  std::string runtime_dir = "/run/sluice-mcpd";  // the local admin socket; the agent owns /run/sluice
  std::vector<std::uint32_t> admin_uids = {0};
  bool journal = true;
  // Group commit: how long the audit writer may hold a commit back for
  // records of calls still running (0: never).
  std::chrono::microseconds audit_group_wait{250};
  // The audit chain's head is also appended to audit_anchors() (make it
  // append-only: chattr +a), at most once per interval and at stop.
  bool audit_anchors = true;
  std::chrono::milliseconds audit_anchor_interval{1000};
  // [auth]
  unsigned lockout_failures = 10;
  std::chrono::seconds lockout_window{300};
  // [limits]
  double tenant_rate = 200, tenant_burst = 400;  // /mcp requests per second, per tenant
  double admin_rate = 5, admin_burst = 20;       // heavy admin endpoints, per tenant
  double admin_light_rate = 50, admin_light_burst = 200;  // the other admin reads, per tenant
  std::size_t max_sessions = 10000;
  std::chrono::seconds session_idle{3600};
  // An SSE response of a 2025-11-25 client ends after stream_hold; the
  // client reconnects after stream_retry (the retry field) with
  // Last-Event-ID and misses nothing.
  std::chrono::seconds stream_hold{300};
  std::chrono::milliseconds stream_retry{2000};
  // Streamed responses open at once per key and per tenant (StreamLimits).
  std::size_t streams_per_key = 64, streams_per_tenant = 256;
  // Live keys (neither revoked nor expired) a user may hold from the admin
  // API; the admin socket is not bound by it.
  std::size_t keys_per_user = 100;
  // What answers not yet sent to their clients may hold, in all and
  // per tenant (answer_memory_mb, answer_memory_per_tenant_mb).
  AnswerLimits answers;
  // [query]
  std::size_t max_rows = 1000;
  std::chrono::milliseconds query_timeout{2000};
  // The in-memory temporary files (sorts, temporary tables) one query may hold.
  std::size_t query_temp_memory = std::size_t{256} << 20;
  // What a tenant file's parsed schema may take per connection; a file
  // over it is not served (QueryLimits::schema_memory).
  std::size_t query_schema_memory = std::size_t{16} << 20;
  // [agent]: where tenant policies are pushed. Empty socket: no agent, and
  // kernel enforcement is reported absent.
  std::string agent_socket;
  std::string endpoints_file;  // the endpoints policies compile against (JSON)
  std::chrono::milliseconds agent_timeout{10000};  // one apply, both layers
  std::chrono::milliseconds agent_retry{15000};    // re-push of pending versions
  bool allow_loopback = false;                     // loopback endpoints (test set-ups only)
  // [testing]
  bool fixtures = false;  // the conformance suite's fixture tools

  [[nodiscard]] std::string database() const { return data_dir + "/mcpd.db"; }
  [[nodiscard]] std::string anchors() const { return anchors_beside(database()); }
  [[nodiscard]] std::string admin_socket() const { return runtime_dir + "/mcpd-admin.sock"; }
};

Result<McpdConfig> parse_config(const std::string& text);
Result<McpdConfig> load_config(const std::string& path);

}  // namespace sluice::mcpd
