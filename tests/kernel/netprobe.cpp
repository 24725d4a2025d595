// netprobe: one network action from inside a cgroup, for the kernel tests.
//
//   netprobe [--cgroup DIR] ACTION ARGS...
//
// Moves itself into DIR first (so every socket it creates belongs to that
// cgroup), performs ACTION, prints "ok" or "errno N NAME" and exits 0 / 1.
// Actions:
//   tcp HOST PORT              connect (AF_INET for a.b.c.d, AF_INET6 otherwise)
//   tcp6 HOST PORT             connect from an AF_INET6 socket (v4 as ::ffff:a.b.c.d)
//   udp HOST PORT              sendto without connect
//   udp6 HOST PORT             sendto from an AF_INET6 socket
//   udp-connected H1 P1 H2 P2  connect to H1:P1, then sendto H2:P2
//   tfo HOST PORT              TCP Fast Open: sendto(MSG_FASTOPEN)
//   uring HOST PORT            connect through io_uring
//   mptcp HOST PORT            connect an IPPROTO_MPTCP socket
//   ping                       create an ICMP ping socket
//   raw                        create a raw socket
//   ipopts                     set IP_OPTIONS (source routing's vehicle) on a TCP socket
//   hold HOST PORT             connect, print "connected", then wait until a
//                              read or write fails and print that errno
//   loop HOST PORT MS          connect repeatedly for MS milliseconds; print
//                              "attempts N succeeded M"
//   listen PORT SECONDS        accept TCP connections on 127.0.0.1:PORT for a
//                              while (for the demo), holding them open
#include <arpa/inet.h>
#include <fcntl.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>

#ifndef IPPROTO_MPTCP
#define IPPROTO_MPTCP 262
#endif

namespace {

int report(int err) {
  if (err == 0) {
    std::printf("ok\n");
    return 0;
  }
  std::printf("errno %d %s\n", err, strerrorname_np(err) ? strerrorname_np(err) : "?");
  return 1;
}

struct Addr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  int family = AF_INET;
};

// v6 = true: always an AF_INET6 sockaddr (IPv4 as v4-mapped).
bool make_addr(const char* host, const char* port, bool v6, Addr& out) {
  const int p = std::atoi(port);
  in_addr a4{};
  if (inet_pton(AF_INET, host, &a4) == 1 && !v6) {
    auto* sin = reinterpret_cast<sockaddr_in*>(&out.ss);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<uint16_t>(p));
    sin->sin_addr = a4;
    out.len = sizeof *sin;
    out.family = AF_INET;
    return true;
  }
  auto* sin6 = reinterpret_cast<sockaddr_in6*>(&out.ss);
  sin6->sin6_family = AF_INET6;
  sin6->sin6_port = htons(static_cast<uint16_t>(p));
  std::string text = host;
  if (inet_pton(AF_INET, host, &a4) == 1) text = "::ffff:" + text;
  if (inet_pton(AF_INET6, text.c_str(), &sin6->sin6_addr) != 1) return false;
  out.len = sizeof *sin6;
  out.family = AF_INET6;
  return true;
}

int do_connect(int type, int proto, const char* host, const char* port, bool v6, int* fd_out = nullptr) {
  Addr a;
  if (!make_addr(host, port, v6, a)) return EINVAL;
  const int fd = ::socket(a.family, type, proto);
  if (fd < 0) return errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a.ss), a.len) != 0) {
    const int err = errno;
    ::close(fd);
    return err;
  }
  if (fd_out) {
    *fd_out = fd;
  } else {
    ::close(fd);
  }
  return 0;
}

int do_sendto(const char* host, const char* port, bool v6) {
  Addr a;
  if (!make_addr(host, port, v6, a)) return EINVAL;
  const int fd = ::socket(a.family, SOCK_DGRAM, 0);
  if (fd < 0) return errno;
  const int rc = static_cast<int>(::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&a.ss), a.len));
  const int err = rc < 0 ? errno : 0;
  ::close(fd);
  return err;
}

int do_udp_connected(char** argv) {
  Addr first, second;
  if (!make_addr(argv[0], argv[1], false, first) || !make_addr(argv[2], argv[3], false, second)) {
    return EINVAL;
  }
  const int fd = ::socket(first.family, SOCK_DGRAM, 0);
  if (fd < 0) return errno;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&first.ss), first.len) != 0) {
    const int err = errno;
    ::close(fd);
    return err;
  }
  const int rc = static_cast<int>(
      ::sendto(fd, "x", 1, 0, reinterpret_cast<sockaddr*>(&second.ss), second.len));
  const int err = rc < 0 ? errno : 0;
  ::close(fd);
  return err;
}

int do_tfo(const char* host, const char* port) {
  Addr a;
  if (!make_addr(host, port, false, a)) return EINVAL;
  const int fd = ::socket(a.family, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  const int rc = static_cast<int>(
      ::sendto(fd, "x", 1, MSG_FASTOPEN, reinterpret_cast<sockaddr*>(&a.ss), a.len));
  const int err = rc < 0 ? errno : 0;
  ::close(fd);
  return err;
}

int do_uring(const char* host, const char* port) {
  Addr a;
  if (!make_addr(host, port, false, a)) return EINVAL;
  const int fd = ::socket(a.family, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  io_uring ring;
  if (int rc = io_uring_queue_init(4, &ring, 0); rc < 0) {
    ::close(fd);
    return -rc;
  }
  io_uring_sqe* sqe = io_uring_get_sqe(&ring);
  io_uring_prep_connect(sqe, fd, reinterpret_cast<sockaddr*>(&a.ss), a.len);
  io_uring_submit(&ring);
  io_uring_cqe* cqe = nullptr;
  int err = 0;
  if (int rc = io_uring_wait_cqe(&ring, &cqe); rc < 0) {
    err = -rc;
  } else {
    err = cqe->res < 0 ? -cqe->res : 0;
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
  ::close(fd);
  return err;
}

// Holds a connection until it breaks; prints the errno that broke it.
int do_hold(const char* host, const char* port) {
  int fd = -1;
  if (int err = do_connect(SOCK_STREAM, 0, host, port, false, &fd); err != 0) return report(err);
  std::printf("connected\n");
  std::fflush(stdout);
  // Bounded: the test revokes within seconds; 60 s means it never did.
  for (int i = 0; i < 600; ++i) {
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, 100);
    char c;
    const ssize_t n = ::recv(fd, &c, 1, MSG_DONTWAIT);
    if (n < 0 && errno != EAGAIN) return report(errno);
    if (n == 0) return report(ECONNRESET);  // orderly close: not what revocation does
  }
  std::printf("still connected\n");
  return 2;
}

int do_loop(const char* host, const char* port, const char* ms) {
  timespec start{}, now{};
  ::clock_gettime(CLOCK_MONOTONIC, &start);
  const long limit_ms = std::atol(ms);
  long attempts = 0, succeeded = 0;
  while (true) {
    ::clock_gettime(CLOCK_MONOTONIC, &now);
    const long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
    if (elapsed >= limit_ms) break;
    ++attempts;
    if (do_connect(SOCK_STREAM, 0, host, port, false) == 0) ++succeeded;
  }
  std::printf("attempts %ld succeeded %ld\n", attempts, succeeded);
  return succeeded == 0 ? 0 : 1;
}

int do_listen(const char* port, const char* seconds) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(std::atoi(port)));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 64) != 0) {
    return report(errno);
  }
  ::alarm(static_cast<unsigned>(std::atoi(seconds)));  // bounded: ends by itself
  while (true) {
    const int c = ::accept(fd, nullptr, nullptr);
    if (c < 0 && errno != EINTR) return report(errno);
  }
}

}  // namespace

int main(int argc, char** argv) {
  int i = 1;
  if (argc > 2 && std::strcmp(argv[1], "--cgroup") == 0) {
    const std::string procs = std::string(argv[2]) + "/cgroup.procs";
    const int fd = ::open(procs.c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0 || ::write(fd, "0", 1) != 1) {
      std::perror(procs.c_str());
      return 3;
    }
    ::close(fd);
    i = 3;
  }
  if (i >= argc) return 3;
  const std::string action = argv[i];
  char** args = argv + i + 1;
  const int nargs = argc - i - 1;
  if (action == "tcp" && nargs == 2) return report(do_connect(SOCK_STREAM, 0, args[0], args[1], false));
  if (action == "tcp6" && nargs == 2) return report(do_connect(SOCK_STREAM, 0, args[0], args[1], true));
  if (action == "udp" && nargs == 2) return report(do_sendto(args[0], args[1], false));
  if (action == "udp6" && nargs == 2) return report(do_sendto(args[0], args[1], true));
  if (action == "udp-connected" && nargs == 4) return report(do_udp_connected(args));
  if (action == "tfo" && nargs == 2) return report(do_tfo(args[0], args[1]));
  if (action == "uring" && nargs == 2) return report(do_uring(args[0], args[1]));
  if (action == "mptcp" && nargs == 2) {
    return report(do_connect(SOCK_STREAM, IPPROTO_MPTCP, args[0], args[1], false));
  }
  if (action == "ping" && nargs == 0) {
    const int fd = ::socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
    if (fd >= 0) ::close(fd);
    return report(fd < 0 ? errno : 0);
  }
  if (action == "ipopts" && nargs == 0) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    const unsigned char nops[4] = {1, 1, 1, 1};  // four NOP options: valid, harmless
    const int rc = ::setsockopt(fd, IPPROTO_IP, IP_OPTIONS, nops, sizeof nops);
    const int err = rc != 0 ? errno : 0;
    ::close(fd);
    return report(err);
  }
  if (action == "raw" && nargs == 0) {
    const int fd = ::socket(AF_INET, SOCK_RAW, IPPROTO_UDP);
    if (fd >= 0) ::close(fd);
    return report(fd < 0 ? errno : 0);
  }
  if (action == "hold" && nargs == 2) return do_hold(args[0], args[1]);
  if (action == "loop" && nargs == 3) return do_loop(args[0], args[1], args[2]);
  if (action == "listen" && nargs == 2) return do_listen(args[0], args[1]);
  std::fprintf(stderr, "netprobe: unknown action or arguments\n");
  return 3;
}
