#include "agent_client.h"

#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <iostream>

#include "sluice/policy/policy.h"

namespace sluice::ctl {
namespace {

constexpr std::size_t kMaxReply = 16 * 1024 * 1024;
constexpr std::size_t kMaxReplyValues = 1000000;

using Clock = std::chrono::steady_clock;

// Waits for `events` until the call's deadline: the whole call is bounded,
// not each step of it.
bool wait_for(int fd, short events, Clock::time_point deadline) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, INT_MAX)));
    if (r == 1) return true;
    if (r < 0 && errno == EINTR) continue;
    return false;
  }
}

bool write_all(int fd, const std::string& data, Clock::time_point deadline) {
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::send(fd, data.data() + done, data.size() - done, MSG_NOSIGNAL);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (!wait_for(fd, POLLOUT, deadline)) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Reads exactly n bytes; collects at most one passed fd along the way.
bool read_exact(int fd, char* out, std::size_t n, Clock::time_point deadline, int& passed_fd) {
  std::size_t done = 0;
  while (done < n) {
    if (!wait_for(fd, POLLIN, deadline)) return false;
    iovec iov{out + done, n - done};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    const ssize_t got = ::recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (got <= 0) return false;
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        int received = -1;
        std::memcpy(&received, CMSG_DATA(c), sizeof received);
        if (passed_fd < 0) {
          passed_fd = received;
        } else {
          ::close(received);
        }
      }
    }
    done += static_cast<std::size_t>(got);
  }
  return true;
}

}  // namespace

std::optional<AgentReply> agent_call(const std::string& socket_path, const nlohmann::json& request,
                                     int timeout_ms, std::string* why, bool* connected) {
  if (connected) *connected = false;
  const auto fail = [why](const std::string& message) {
    if (why) {
      *why = message;
    } else {
      std::cerr << "sluicectl: " << message << "\n";
    }
  };
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  // Non-blocking throughout: a wedged agent costs at most timeout_ms.
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    fail(std::string("socket: ") + std::strerror(errno));
    return std::nullopt;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) {
    fail("socket path too long");
    ::close(fd);
    return std::nullopt;
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    // EAGAIN: the agent's accept queue is full.
    fail("cannot reach the agent at " + socket_path + ": " + std::strerror(errno));
    ::close(fd);
    return std::nullopt;
  }
  // sluice-agent runs as root. A socket served by anyone else (planted
  // where the agent's should be) is not believed: its "acknowledgements"
  // would be reported as kernel enforcement. Our own uid is accepted too:
  // a process of it could impersonate us anyway (and tests' stand-ins are
  // ours).
  ucred peer{};
  socklen_t peer_len = sizeof peer;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &peer, &peer_len) != 0 ||
      (peer.uid != 0 && peer.uid != ::geteuid())) {
    fail("the socket at " + socket_path + " is not served by root: not sluice-agent");
    ::close(fd);
    return std::nullopt;
  }
  if (connected) *connected = true;
  // Replace, never throw, on a string that is not UTF-8.
  const std::string body = request.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  const std::uint32_t len = htonl(static_cast<std::uint32_t>(body.size()));
  std::string frame(reinterpret_cast<const char*>(&len), 4);
  frame += body;
  // A failed send is not yet a failure: a peer the agent refuses is
  // answered at once, and that answer is worth reading.
  const bool sent = write_all(fd, frame, deadline);
  AgentReply reply;
  std::uint32_t reply_len = 0;
  std::string text;
  bool ok = read_exact(fd, reinterpret_cast<char*>(&reply_len), 4, deadline, reply.fd);
  if (ok) {
    reply_len = ntohl(reply_len);
    ok = reply_len > 0 && reply_len <= kMaxReply;
  }
  if (ok) {
    text.resize(reply_len);
    ok = read_exact(fd, text.data(), reply_len, deadline, reply.fd);
  }
  ::close(fd);
  if (!ok) {
    fail(sent ? "no valid reply from the agent" : "send to the agent failed");
    if (reply.fd >= 0) ::close(reply.fd);
    return std::nullopt;
  }
  // Bounded in depth and values before a tree is built: a confused or
  // compromised agent's reply must not overflow the caller's stack (the
  // JSON library copies recursively) or its memory.
  auto parsed = sluice::policy::parse_json_strictly(text, kMaxReply, kMaxReplyValues);
  if (!parsed) {
    fail("the agent's reply is not acceptable JSON: " + parsed.error().message);
    if (reply.fd >= 0) ::close(reply.fd);
    return std::nullopt;
  }
  reply.body = std::move(*parsed);
  return reply;
}

}  // namespace sluice::ctl
