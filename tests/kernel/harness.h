// Kernel test harness: a real sluice-agent with a unique instance, real
// processes in its tenant cgroups (netprobe), listeners on loopback. The
// tests run inside a private network namespace with only `lo` (see
// run-in-netns.sh); every instance is uninstalled on the way out, even
// when an assertion fails.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace sluice::testing {

struct RunResult {
  int status = -1;     // exit code
  std::string out;     // stdout, trimmed
};

// Runs a program to completion (bounded), capturing stdout.
RunResult run(const std::vector<std::string>& argv, int timeout_ms = 20000);

// A program running in the background; killed on destruction.
class Background {
 public:
  explicit Background(const std::vector<std::string>& argv);
  ~Background();
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;
  // Next line of stdout (bounded wait); "" on timeout or end.
  std::string read_line(int timeout_ms = 10000);
  // Waits for exit (bounded); returns the rest of stdout.
  RunResult wait(int timeout_ms = 20000);
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  std::string buffered_;
};

struct InstanceOptions {
  std::uint32_t tamper_check_ms = 60000;
  std::vector<std::string> dns_servers;
  std::vector<std::pair<std::string, std::string>> static_hosts;  // name, address
  std::uint32_t min_ttl_s = 30;
  std::vector<std::uint32_t> allowed_peer_uids;
  std::vector<std::string> internal_networks;  // network.internal_networks
};

class Instance {
 public:
  explicit Instance(InstanceOptions options = {});
  ~Instance();
  Instance(const Instance&) = delete;
  Instance& operator=(const Instance&) = delete;

  void start();  // waits until the control socket answers
  void kill9();
  nlohmann::json call(const nlohmann::json& request);
  // Compiles the policy with the endpoints configuration and applies it.
  nlohmann::json apply(const std::string& tenant, std::uint64_t version,
                       const std::string& policy_json, const std::string& endpoints_json);

  [[nodiscard]] std::string cgroup(const std::string& tenant, const std::string& purpose) const;
  [[nodiscard]] const std::string& name() const { return name_; }
  [[nodiscard]] std::string socket_path() const { return runtime_ + "/agent.sock"; }
  [[nodiscard]] std::string pin_dir() const;
  [[nodiscard]] std::string config_path() const { return runtime_ + ".toml"; }
  [[nodiscard]] pid_t agent_pid() const { return agent_; }
  // Detaches every pinned BPF link of the instance (the BPF layer stops
  // judging; the pins stay, defunct). Returns how many; throws on failure.
  int detach_links() const;

 private:
  std::string name_;
  std::string runtime_;
  pid_t agent_ = -1;
};

// netprobe ACTION... from inside `cgroup`.
RunResult probe(const std::string& cgroup, const std::vector<std::string>& action);

// TCP listeners on 127.0.0.1 and ::1, on one free port each; closed on
// destruction. Connections complete in the kernel (backlog), so a
// successful connect needs no accept.
class Listener {
 public:
  Listener();
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string port_text() const { return std::to_string(port_); }

 private:
  int fd4_ = -1, fd6_ = -1;
  std::uint16_t port_ = 0;
};

// A real DNS server (dnsmasq from Debian) on 127.0.0.1, answering only
// from its command line; every query it receives is logged.
class Dnsmasq {
 public:
  // `records`: dnsmasq options such as "--address=/llm.test/127.0.0.1".
  Dnsmasq(const std::vector<std::string>& records, std::uint32_t ttl_s);
  ~Dnsmasq();
  Dnsmasq(const Dnsmasq&) = delete;
  Dnsmasq& operator=(const Dnsmasq&) = delete;
  [[nodiscard]] std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  // Whether the server was ever asked about `name`.
  [[nodiscard]] bool was_queried(const std::string& name) const;

 private:
  std::uint16_t port_ = 0;
  std::string log_;
  pid_t pid_ = -1;
};

std::string agent_binary();
std::string netprobe_binary();
std::string cgroup2_mount();

}  // namespace sluice::testing
