// sluicectl: operator command line for Sluice.
#include <cerrno>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>

#include "cli.h"

namespace sluice::ctl {

std::optional<std::string> read_input(const std::string& path, std::size_t max_bytes) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) {
      std::cerr << "sluicectl: cannot open " << path << ": " << std::strerror(errno) << "\n";
      return std::nullopt;
    }
    in = &file;
  }
  std::string data;
  char buf[65536];
  while (*in) {
    in->read(buf, sizeof buf);
    data.append(buf, static_cast<std::size_t>(in->gcount()));
    if (data.size() > max_bytes) {
      std::cerr << "sluicectl: " << path << " is larger than " << max_bytes << " bytes\n";
      return std::nullopt;
    }
  }
  if (in->bad()) {
    std::cerr << "sluicectl: cannot read " << path << "\n";
    return std::nullopt;
  }
  return data;
}

}  // namespace sluice::ctl

int main(int argc, char** argv) {
  CLI::App app{"sluicectl: operate Sluice (tenant policies, the enforcement agent, mcpd)"};
  app.require_subcommand(1);
  int exit_code = sluice::ctl::kExitOk;
  sluice::ctl::add_policy_commands(app, exit_code);
  sluice::ctl::add_agent_commands(app, exit_code);
  sluice::ctl::add_mcpd_commands(app, exit_code);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);  // prints the message and usage hint
    return sluice::ctl::kExitInvalid;
  }
  return exit_code;
}
