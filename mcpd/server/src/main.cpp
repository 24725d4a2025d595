// sluice-mcpd: MCP and the admin API over HTTPS.
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl/context.hpp>
#include <sqlite3.h>
#include <systemd/sd-daemon.h>

#if SLUICE_MIMALLOC
#include <mimalloc.h>
#endif

#include "app.h"
#include "config.h"
#include "enforcement.h"
#include "http_server.h"
#include "local_admin.h"
#include "temp_files.h"
#include "tls.h"

using namespace sluice::mcpd;

namespace {
// Which allocator serves malloc: mimalloc when it is linked and really
// interposed (a preloaded allocator would come first).
const char* allocator_in_use() {
#if SLUICE_MIMALLOC
  void* p = std::malloc(64);
  const bool ours = mi_is_in_heap_region(p);
  std::free(p);
  return ours ? "mimalloc" : "not mimalloc (interposed by another allocator)";
#else
  return "libc";
#endif
}

// Descriptors kept for everything but client connections: data-source
// pools, the databases, the admin socket and its clients, the agent. At
// least this many, and a quarter of a larger limit (pools grow with tenants).
constexpr rlim_t kReservedDescriptors = 256;

// The connection cap the descriptor limit allows: the soft limit is raised
// to the hard one first; a cap above what is left is lowered, and said so
// (accepting past the limit would fail everything else that opens a file).
std::size_t connections_within_descriptors(std::size_t wanted) {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return wanted;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  if (lim.rlim_cur == RLIM_INFINITY) return wanted;
  const rlim_t reserved = std::max(kReservedDescriptors, lim.rlim_cur / 4);
  const std::size_t room = lim.rlim_cur > reserved * 2 ? static_cast<std::size_t>(lim.rlim_cur - reserved)
                                                       : static_cast<std::size_t>(lim.rlim_cur / 2);
  if (wanted <= room) return wanted;
  std::printf("sluice-mcpd: [server] max_connections %zu lowered to %zu: the process may open %llu descriptors "
              "(raise LimitNOFILE)\n",
              wanted, room, static_cast<unsigned long long>(lim.rlim_cur));
  return room;
}

// The endpoints file (with an agent) parses, and a certificate and key
// given by name load as a pair. Writes nothing: a pair to be generated, or
// one from systemd credentials, is looked for at start.
Status check_named_files(const McpdConfig& config) {
  if (!config.agent_socket.empty()) {
    if (auto endpoints = read_endpoints(config); !endpoints) return tl::unexpected(endpoints.error());
  }
  if (config.cert_file.empty() && config.key_file.empty()) return {};
  auto files = locate_tls(config.cert_file, config.key_file, config.data_dir);
  if (!files) return tl::unexpected(files.error());
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_server);
  return configure_tls(tls, *files);
}

}  // namespace

int main(int argc, char** argv) {
  // Tenant rows and key material pass through this process's memory: no
  // core file of it (whatever handles cores), and no ptrace by its own user.
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    std::fprintf(stderr, "sluice-mcpd: cannot make the process non-dumpable: %s\n", std::strerror(errno));
    return 1;
  }
  CLI::App cli{"sluice-mcpd: MCP over HTTPS for AI clients, over local data"};
  std::string config_path = "/etc/sluice/mcpd.toml";
  bool check = false;
  cli.add_option("--config", config_path, "configuration file (TOML)");
  cli.add_flag("--check", check, "validate the configuration and exit");
  CLI11_PARSE(cli, argc, argv);

  auto config = load_config(config_path);
  if (!config) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", config.error().what.c_str());
    return 2;
  }
  // The files the configuration names are part of it: a bad one is a bad
  // value (exit 2), found by --check as well.
  if (auto s = check_named_files(*config); !s) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", s.error().what.c_str());
    return 2;
  }
  if (check) return 0;
  std::signal(SIGPIPE, SIG_IGN);
  ::umask(077);
  ::mkdir(config->data_dir.c_str(), 0700);
  ::mkdir(config->runtime_dir.c_str(), 0700);
  // Every SQLite allocation of the process together. The byte cap bounds
  // what mcpd copies out of a row, not what SQLite holds while computing
  // it: a crafted SELECT of 2000 one-MiB values is 2 GB. Past this limit
  // SQLite's allocations fail: that query (or an audit commit meanwhile)
  // fails closed, and the host keeps its memory.
  constexpr sqlite3_int64 kSqliteHeapLimit = sqlite3_int64{1} << 30;
  sqlite3_hard_heap_limit64(kSqliteHeapLimit);
  // Past half of it, page caches stop growing and recycle their own pages
  // (pcache1 under memory pressure): the caches of many tenants' pooled
  // connections must not take the room that queries and the audit log's
  // commits need before the hard limit fails them.
  sqlite3_soft_heap_limit64(kSqliteHeapLimit / 2);
  // The data sources' VFS, and SQLite's open(2) replaced for the whole
  // process (temp_files.h), while this is the only thread.
  if (!memory_temp_vfs()) {
    std::fprintf(stderr, "sluice-mcpd: SQLite's file layer could not be set up\n");
    return 1;
  }

  auto app = App::open(*config);
  if (!app) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", app.error().what.c_str());
    return 1;
  }
  auto tls_files = locate_tls(config->cert_file, config->key_file, config->data_dir);
  if (!tls_files) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", tls_files.error().what.c_str());
    return 1;
  }
  boost::asio::ssl::context tls(boost::asio::ssl::context::tls_server);
  if (auto s = configure_tls(tls, *tls_files); !s) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", s.error().what.c_str());
    return 1;
  }

  boost::asio::io_context io(static_cast<int>(config->threads));
  HttpLimits limits;
  limits.max_connections = connections_within_descriptors(config->max_connections);
  limits.max_connections_per_client = config->max_connections_per_client;
  limits.uncapped_peers = config->trusted_proxies;
  limits.header_limit = config->header_limit;
  limits.body_limit = config->body_limit;
  limits.request_timeout = config->request_timeout;
  limits.idle_timeout = config->idle_timeout;
  App* a = app->get();
  HttpServer http(
      io, tls, limits, [a](const RequestHeader& head, const std::string& client) { return a->check_header(head, client); },
      [a](HttpRequest req, std::any admitted) { return a->handle(std::move(req), std::move(admitted)); });
  (*app)->set_connections(&http);
  // Socket activation: the listener comes from systemd, no bind needed.
  auto bound = sd_listen_fds(0) >= 1 ? http.adopt(SD_LISTEN_FDS_START)
                                     : http.listen(config->listen_address, config->listen_port);
  if (!bound) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", bound.error().what.c_str());
    return 1;
  }
  LocalAdmin admin(io, config->admin_uids, [a](const nlohmann::json& r) { return a->local_admin(r); },
                   a->local_admin_executor());
  if (auto s = admin.listen(config->admin_socket()); !s) {
    std::fprintf(stderr, "sluice-mcpd: %s\n", s.error().what.c_str());
    return 1;
  }

  const auto address = bound->address();
  const std::string host = address.is_v6() ? "[" + address.to_string() + "]" : address.to_string();
  std::printf("sluice-mcpd: listening on https://%s:%u/mcp\n", host.c_str(), static_cast<unsigned>(bound->port()));
  std::printf("sluice-mcpd: certificate %s%s\n", tls_files->cert.c_str(), tls_files->generated ? " (generated, self-signed)" : "");
  std::printf("sluice-mcpd: certificate SHA-256 fingerprint %s\n", tls_files->fingerprint.c_str());
  std::printf("sluice-mcpd: admin socket %s\n", config->admin_socket().c_str());
  if (config->audit_anchors) {
    std::printf("sluice-mcpd: audit anchors %s%s\n", config->anchors().c_str(),
                a->audit().anchors_append_only() ? " (append-only)"
                                                 : " (NOT append-only: as root, chattr +a it so the mcpd user "
                                                   "cannot remove anchors)");
  }
  std::printf("sluice-mcpd: allocator %s\n", allocator_in_use());
  for (const std::string& warning : a->startup_warnings()) std::printf("sluice-mcpd: %s\n", warning.c_str());
  std::fflush(stdout);

  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](const boost::system::error_code&, int) { io.stop(); });
  sd_notify(0, "READY=1");
  std::vector<std::thread> threads;
  for (unsigned i = 1; i < config->threads; ++i) threads.emplace_back([&io] { io.run(); });
  io.run();
  for (auto& t : threads) t.join();
  // No thread runs io now: the listeners close at once (nothing queues in
  // their backlogs while the App shuts down), safely.
  http.stop();
  admin.stop();
  // Our threads drain and answer into io's queue: stop them while io still
  // exists. io goes next (declared after the App), destroying suspended
  // calls whose frames still refer to the App; the App goes last.
  (*app)->shutdown();
  return 0;
}
