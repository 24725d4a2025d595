// sluice-agent: kernel enforcement of tenant egress policy.
//
//   sluice-agent --config FILE             run (sd_notify READY=1 once enforcing)
//   sluice-agent --config FILE --uninstall remove links, maps, table, cgroups
//   sluice-agent --config FILE --check     validate the configuration only
#include <csignal>
#include <iostream>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <bpf/libbpf.h>
#include <systemd/sd-daemon.h>

#include "agent.h"
#include "server.h"

namespace {

int libbpf_log(enum libbpf_print_level level, const char* fmt, va_list args) {
  if (level == LIBBPF_DEBUG) return 0;
  return std::vfprintf(stderr, fmt, args);
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"sluice-agent: kernel enforcement of tenant egress policy"};
  std::string config_path = "/etc/sluice/agent.toml";
  bool uninstall = false, check = false;
  app.add_option("--config", config_path, "Configuration file (TOML)");
  app.add_flag("--uninstall", uninstall, "Remove everything this instance installed, then exit");
  app.add_flag("--check", check, "Validate the configuration, then exit");
  CLI11_PARSE(app, argc, argv);

  auto config = sluice::agent::load_config(config_path);
  if (!config) {
    std::cerr << "sluice-agent: " << config.error().to_string() << "\n";
    return 2;
  }
  if (check) return 0;
  libbpf_set_print(libbpf_log);
  if (uninstall) {
    if (auto s = sluice::agent::Agent::uninstall(*config); !s) {
      std::cerr << "sluice-agent: uninstall: " << s.error().to_string() << "\n";
      return 1;
    }
    return 0;
  }
  std::signal(SIGPIPE, SIG_IGN);

  auto agent = sluice::agent::Agent::start(*config);
  if (!agent) {
    std::cerr << "sluice-agent: cannot start: " << agent.error().to_string() << "\n";
    return 1;
  }
  boost::asio::io_context io(1);
  auto resolver = sluice::agent::Resolver::create(io, *config);
  if (!resolver) {
    std::cerr << "sluice-agent: " << resolver.error().to_string() << "\n";
    return 1;
  }
  sluice::agent::Server server(io, **agent, **resolver);
  if (auto s = server.start(); !s) {
    std::cerr << "sluice-agent: " << s.error().to_string() << "\n";
    return 1;
  }
  boost::asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&](auto, int) { io.stop(); });

  // Both layers hold the saved state and the control socket listens.
  sd_notify(0, "READY=1");
  std::cerr << "sluice-agent: " << config->instance << " enforcing, generation "
            << (*agent)->status()["generation"] << "\n";
  io.run();
  // Exit leaves links, maps and the table in place: the kernel keeps
  // enforcing the last applied rules while no agent runs.
  sd_notify(0, "STOPPING=1");
  return 0;
}
