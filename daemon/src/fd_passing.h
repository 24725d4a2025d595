// Passing one file descriptor with a message over a Unix socket
// (SCM_RIGHTS). Header-only and allocation-free: the seccomp-confined
// broker uses it too, where only sendmsg/recvmsg are allowed.
#pragma once

#include <sys/socket.h>
#include <sys/types.h>

#include <unistd.h>

#include <cstring>

namespace sluice::agent {

// Sends `len` bytes, with `fd` attached when fd >= 0.
inline ssize_t send_with_fd(int sock, const void* data, std::size_t len, int fd) {
  iovec iov{const_cast<void*>(data), len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &fd, sizeof fd);
  }
  return ::sendmsg(sock, &msg, MSG_NOSIGNAL);
}

// Receives up to `len` bytes; `fd` gets a passed descriptor (close-on-exec)
// or -1. Extra descriptors beyond the first are closed, never leaked.
inline ssize_t recv_with_fd(int sock, void* data, std::size_t len, int& fd) {
  fd = -1;
  iovec iov{data, len};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 4)] = {};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  const ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int received = -1;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof received);
      if (fd < 0) {
        fd = received;
      } else {
        ::close(received);
      }
    }
  }
  return n;
}

}  // namespace sluice::agent
