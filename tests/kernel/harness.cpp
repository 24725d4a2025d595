#include "harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <thread>

#include <bpf/bpf.h>
#include <dirent.h>

#include "agent_client.h"
#include "cgroup.h"
#include "sluice/policy/rules.h"

namespace sluice::testing {
namespace {

std::atomic<int> counter{0};

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

pid_t spawn(const std::vector<std::string>& argv, int stdout_fd, int stderr_fd) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    if (stdout_fd >= 0) ::dup2(stdout_fd, 1);
    if (stderr_fd >= 0) ::dup2(stderr_fd, 2);
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  return pid;
}

int wait_exit(pid_t pid, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    int status = 0;
    const pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (r < 0) return -1;
    if (std::chrono::steady_clock::now() > deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return -2;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
}

// Whether something listens on the Unix socket (without a noisy client).
bool accepting(const std::string& path) {
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path.c_str());
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return ok;
}

constexpr char kAgentCapabilities[] =
    "+bpf,+net_admin,+perfmon,+dac_override,+setuid,+setgid,+kill";

std::string prefix() {
  const char* p = std::getenv("SLUICE_TEST_PREFIX");
  return p && *p ? p : "slt" + std::to_string(::getpid());
}

}  // namespace

std::string agent_binary() { return SLUICE_AGENT_BIN; }
std::string netprobe_binary() { return SLUICE_NETPROBE_BIN; }

// The agent's own finder: tests see the hierarchy exactly as it does.
std::string cgroup2_mount() {
  auto mount = agent::find_cgroup2_mount();
  if (!mount) throw std::runtime_error(mount.error().to_string());
  return mount->mountpoint;
}

RunResult run(const std::vector<std::string>& argv, int timeout_ms) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  // stderr goes nowhere: tests assert on exit codes and stdout.
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  const pid_t pid = spawn(argv, pipe_fds[1], devnull);
  ::close(devnull);
  ::close(pipe_fds[1]);
  RunResult r;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  char buf[4096];
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) break;
    pollfd p{pipe_fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) break;
    const ssize_t n = ::read(pipe_fds[0], buf, sizeof buf);
    if (n <= 0) break;
    r.out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(pipe_fds[0]);
  r.status = wait_exit(pid, 1000);
  r.out = trim(r.out);
  return r;
}

Background::Background(const std::vector<std::string>& argv) {
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw std::runtime_error("pipe");
  pid_ = spawn(argv, pipe_fds[1], -1);
  ::close(pipe_fds[1]);
  out_ = pipe_fds[0];
}

Background::~Background() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  if (out_ >= 0) ::close(out_);
}

std::string Background::read_line(int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  while (true) {
    if (auto nl = buffered_.find('\n'); nl != std::string::npos) {
      std::string line = buffered_.substr(0, nl);
      buffered_.erase(0, nl + 1);
      return line;
    }
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return "";
    pollfd p{out_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left)) <= 0) return "";
    char buf[1024];
    const ssize_t n = ::read(out_, buf, sizeof buf);
    if (n <= 0) return "";
    buffered_.append(buf, static_cast<std::size_t>(n));
  }
}

RunResult Background::wait(int timeout_ms) {
  RunResult r;
  std::string line;
  while (!(line = read_line(timeout_ms)).empty()) r.out += line + "\n";
  r.out = trim(r.out + buffered_);
  r.status = wait_exit(pid_, timeout_ms);
  pid_ = -1;
  return r;
}

Instance::Instance(InstanceOptions options) {
  name_ = prefix() + "n" + std::to_string(counter++);
  // tmpfs, as /run is on a production host: the state file lives as long
  // as the bpffs pins it describes.
  runtime_ = "/dev/shm/" + name_;
  std::ofstream cfg(config_path());
  cfg << "instance = \"" << name_ << "\"\n"
      << "runtime_dir = \"" << runtime_ << "\"\n"
      << "allow_loopback = true\n"
      << "tamper_check_ms = " << options.tamper_check_ms << "\n"
      << "allowed_peer_uids = [";
  for (std::size_t i = 0; i < options.allowed_peer_uids.size(); ++i) {
    cfg << (i ? ", " : "") << options.allowed_peer_uids[i];
  }
  cfg << "]\n[dns]\nmin_ttl_seconds = " << options.min_ttl_s << "\nservers = [";
  for (std::size_t i = 0; i < options.dns_servers.size(); ++i) {
    cfg << (i ? ", " : "") << "\"" << options.dns_servers[i] << "\"";
  }
  cfg << "]\n[dns.static_hosts]\n";
  for (const auto& [host, addr] : options.static_hosts) {
    cfg << "\"" << host << "\" = [\"" << addr << "\"]\n";
  }
  cfg << "[network]\ninternal_networks = [";
  for (std::size_t i = 0; i < options.internal_networks.size(); ++i) {
    cfg << (i ? ", " : "") << "\"" << options.internal_networks[i] << "\"";
  }
  cfg << "]\n";
}

Instance::~Instance() {
  if (agent_ > 0) kill9();
  run({agent_binary(), "--config", config_path(), "--uninstall"});
  ::unlink(config_path().c_str());
  ::unlink((runtime_ + ".log").c_str());
}

std::string Instance::pin_dir() const { return "/sys/fs/bpf/" + name_ + "/v1"; }

std::string Instance::cgroup(const std::string& tenant, const std::string& purpose) const {
  return cgroup2_mount() + "/" + name_ + "/tenants/" + tenant + "/" + purpose;
}

void Instance::start() {
  const int log = ::open((runtime_ + ".log").c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  // Exactly the capabilities docs/enforcement.md and the systemd unit
  // grant: every kernel test proves the agent needs no more.
  agent_ = spawn({"/usr/bin/setpriv", "--bounding-set", "-all," + std::string(kAgentCapabilities),
                  agent_binary(), "--config", config_path()},
                 log, log);
  ::close(log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (::waitpid(agent_, &status, WNOHANG) == agent_) {
      agent_ = -1;
      std::ifstream in(runtime_ + ".log");
      std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      throw std::runtime_error("sluice-agent exited during start-up: " + text);
    }
    if (accepting(socket_path())) {
      auto reply = ctl::agent_call(socket_path(), {{"op", "status"}}, 2000);
      if (reply && reply->body.value("ok", false)) return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  throw std::runtime_error("sluice-agent did not become ready");
}

int Instance::detach_links() const {
  DIR* dir = ::opendir(pin_dir().c_str());
  if (!dir) throw std::runtime_error("no pin directory " + pin_dir());
  int detached = 0;
  while (dirent* e = ::readdir(dir)) {
    if (!std::string_view(e->d_name).starts_with("link_")) continue;
    const int fd = bpf_obj_get((pin_dir() + "/" + e->d_name).c_str());
    const bool ok = fd >= 0 && bpf_link_detach(fd) == 0;
    if (fd >= 0) ::close(fd);
    if (!ok) {
      ::closedir(dir);
      throw std::runtime_error(std::string("cannot detach ") + e->d_name);
    }
    ++detached;
  }
  ::closedir(dir);
  return detached;
}

void Instance::kill9() {
  if (agent_ <= 0) return;
  ::kill(agent_, SIGKILL);
  ::waitpid(agent_, nullptr, 0);
  agent_ = -1;
}

nlohmann::json Instance::call(const nlohmann::json& request) {
  auto reply = ctl::agent_call(socket_path(), request, 20000);
  if (!reply) throw std::runtime_error("no reply from the agent");
  if (reply->fd >= 0) ::close(reply->fd);
  return reply->body;
}

nlohmann::json Instance::apply(const std::string& tenant, std::uint64_t version,
                               const std::string& policy_json, const std::string& endpoints_json) {
  const policy::DenyOptions deny{.allow_loopback = true};
  auto p = policy::parse_policy(policy_json, deny);
  auto e = policy::parse_endpoints(endpoints_json, deny);
  if (!p) throw std::runtime_error("test policy invalid: " + p.error().front().to_string());
  if (!e) throw std::runtime_error("test endpoints invalid: " + e.error().front().to_string());
  return call({{"op", "apply"}, {"tenant", tenant}, {"version", version},
               {"rules", policy::to_json(policy::compile(*p, *e))}});
}

RunResult probe(const std::string& cgroup, const std::vector<std::string>& action) {
  std::vector<std::string> argv = {netprobe_binary(), "--cgroup", cgroup};
  argv.insert(argv.end(), action.begin(), action.end());
  return run(argv);
}

Listener::Listener() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    fd4_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a4{};
    a4.sin_family = AF_INET;
    a4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a4;
    if (::bind(fd4_, reinterpret_cast<sockaddr*>(&a4), sizeof a4) != 0 ||
        ::getsockname(fd4_, reinterpret_cast<sockaddr*>(&a4), &len) != 0 || ::listen(fd4_, 4096) != 0) {
      throw std::runtime_error("listener v4");
    }
    port_ = ntohs(a4.sin_port);
    fd6_ = ::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd6_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    sockaddr_in6 a6{};
    a6.sin6_family = AF_INET6;
    a6.sin6_addr = in6addr_loopback;
    a6.sin6_port = htons(port_);
    if (::bind(fd6_, reinterpret_cast<sockaddr*>(&a6), sizeof a6) == 0 && ::listen(fd6_, 4096) == 0) {
      return;
    }
    ::close(fd4_);
    ::close(fd6_);
  }
  throw std::runtime_error("no free port pair on loopback");
}

Listener::~Listener() {
  if (fd4_ >= 0) ::close(fd4_);
  if (fd6_ >= 0) ::close(fd6_);
}

Dnsmasq::Dnsmasq(const std::vector<std::string>& records, std::uint32_t ttl_s) {
  // A free port: bound then released (the namespace is ours alone).
  const int probe_fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (::bind(probe_fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(probe_fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("dnsmasq port");
  }
  port_ = ntohs(a.sin_port);
  ::close(probe_fd);
  log_ = "/tmp/" + prefix() + "-dnsmasq-" + std::to_string(port_) + ".log";
  std::vector<std::string> argv = {"/usr/sbin/dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null",
                                   "--no-resolv", "--no-hosts", "--no-poll", "--bind-interfaces",
                                   "--listen-address=127.0.0.1", "--port=" + std::to_string(port_),
                                   "--pid-file=", "--user=dnsmasq", "--log-queries",
                                   "--log-facility=" + log_, "--local-ttl=" + std::to_string(ttl_s)};
  argv.insert(argv.end(), records.begin(), records.end());
  const int devnull = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  pid_ = spawn(argv, devnull, devnull);
  ::close(devnull);
  // Ready when its TCP listener accepts.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (std::chrono::steady_clock::now() < deadline) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    const bool up = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    ::close(fd);
    if (up) return;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  throw std::runtime_error("dnsmasq did not start");
}

Dnsmasq::~Dnsmasq() {
  if (pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  ::unlink(log_.c_str());
}

bool Dnsmasq::was_queried(const std::string& name) const {
  std::ifstream in(log_);
  std::string line;
  while (std::getline(in, line)) {
    if (line.find("query[") != std::string::npos && line.find(" " + name + " ") != std::string::npos) {
      return true;
    }
  }
  return false;
}

}  // namespace sluice::testing
