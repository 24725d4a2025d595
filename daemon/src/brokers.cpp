#include "brokers.h"

#include "fd_passing.h"

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

namespace sluice::agent {
namespace {

constexpr int kReplyTimeoutMs = 2000;

// In the child between fork and exec: async-signal-safe calls only.
[[noreturn]] void become_broker(const std::string& procs, int channel, const BrokerSettings& s) {
  const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 || ::write(fd, "0", 1) != 1) ::_exit(10);
  ::close(fd);
  if (::dup2(channel, 3) != 3) ::_exit(11);
  ::close_range(4, ~0U, 0);
  const int devnull = ::open("/dev/null", O_RDWR);
  if (devnull >= 0) {
    ::dup2(devnull, 0);
    ::dup2(devnull, 1);
    ::dup2(devnull, 2);
    if (devnull > 3) ::close(devnull);
  }
  if (::setgroups(0, nullptr) != 0 || ::setresgid(s.gid, s.gid, s.gid) != 0 ||
      ::setresuid(s.uid, s.uid, s.uid) != 0) {
    ::_exit(12);
  }
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(13);
  char* const argv[] = {const_cast<char*>("sluice-broker"), nullptr};
  char* const envp[] = {nullptr};
  ::execve(s.binary.c_str(), argv, envp);
  ::_exit(14);
}

}  // namespace

Brokers::~Brokers() {
  for (auto& [key, b] : brokers_) stop_one(b);
}

Result<Brokers::Broker> Brokers::spawn(const std::string& cgroup) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    return errno_error("broker socketpair");
  }
  const std::string procs = cgroup + "/cgroup.procs";
  const pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pair[0]);
    ::close(pair[1]);
    return errno_error("fork broker");
  }
  if (pid == 0) become_broker(procs, pair[1], settings_);
  ::close(pair[1]);
  return Broker{pid, pair[0]};
}

void Brokers::stop_one(Broker& b) {
  if (b.channel >= 0) ::close(b.channel);  // EOF: the broker exits
  if (b.pid > 0) {
    ::kill(b.pid, SIGKILL);
    ::waitpid(b.pid, nullptr, 0);
  }
  b = Broker{};
}

Result<int> Brokers::socket(const std::string& key, const std::string& cgroup, int family) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    auto it = brokers_.find(key);
    if (it == brokers_.end()) {
      auto b = spawn(cgroup);
      if (!b) return tl::unexpected(b.error());
      it = brokers_.emplace(key, *b).first;
    }
    Broker& b = it->second;
    const unsigned char request = static_cast<unsigned char>(family);
    if (::send(b.channel, &request, 1, MSG_NOSIGNAL) != 1) {
      stop_one(b);  // died: start a fresh one
      brokers_.erase(it);
      continue;
    }
    pollfd p{b.channel, POLLIN, 0};
    if (::poll(&p, 1, kReplyTimeoutMs) != 1) {
      stop_one(b);
      brokers_.erase(it);
      return error("socket broker did not answer");
    }
    unsigned char status = 0;
    int fd = -1;
    if (recv_with_fd(b.channel, &status, 1, fd) != 1) {
      if (fd >= 0) ::close(fd);
      stop_one(b);
      brokers_.erase(it);
      continue;
    }
    if (status != 0 || fd < 0) {
      if (fd >= 0) ::close(fd);
      return tl::unexpected(SysError{status, "broker socket()"});
    }
    return fd;
  }
  return error("socket broker keeps failing");
}

void Brokers::stop(const std::string& prefix) {
  for (auto it = brokers_.begin(); it != brokers_.end();) {
    if (it->first.starts_with(prefix)) {
      stop_one(it->second);
      it = brokers_.erase(it);
    } else {
      ++it;
    }
  }
}

void Brokers::reap() {
  for (auto it = brokers_.begin(); it != brokers_.end();) {
    if (::waitpid(it->second.pid, nullptr, WNOHANG) == it->second.pid) {
      it->second.pid = -1;
      stop_one(it->second);
      it = brokers_.erase(it);
    } else {
      ++it;
    }
  }
}

nlohmann::json Brokers::describe() const {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [key, b] : brokers_) out[key] = {{"pid", b.pid}};
  return out;
}

}  // namespace sluice::agent
