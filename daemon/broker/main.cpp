// sluice-broker: creates TCP sockets inside one tenant cgroup and passes
// them back to sluice-agent. It is started by the agent already inside
// the cgroup, unprivileged and with no_new_privs; its first act is to
// confine itself with seccomp to exactly this job.
//
// Protocol on fd 3 (a SOCK_SEQPACKET socketpair with the agent): each
// request is one byte, 4 or 6 (the address family); each reply is one
// byte, 0 or an errno, carrying the new socket with SCM_RIGHTS on
// success. EOF on fd 3 ends the broker.
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fd_passing.h"

namespace {

constexpr int kChannel = 3;

#if defined(__x86_64__)
constexpr unsigned kArch = AUDIT_ARCH_X86_64;
#elif defined(__aarch64__)
constexpr unsigned kArch = AUDIT_ARCH_AARCH64;
#else
#error "sluice-broker: add the seccomp audit arch of this platform"
#endif

#define SL_LOAD(field) BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, field))
#define SL_ALLOW_NR(nr) \
  BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (nr), 0, 1), BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW)

// Allows only: recvmsg/sendmsg on the channel, socket(AF_INET|AF_INET6,
// SOCK_STREAM[|SOCK_CLOEXEC], 0), close, exit, exit_group, rt_sigreturn.
// Anything else kills the process.
bool confine() {
  static sock_filter filter[] = {
      SL_LOAD(arch),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kArch, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      SL_LOAD(nr),
      // recvmsg/sendmsg only on the channel (fd 3): no sending elsewhere.
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_recvmsg, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_sendmsg, 0, 4),
      SL_LOAD(args[0]),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, kChannel, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
      SL_ALLOW_NR(__NR_close),
      SL_ALLOW_NR(__NR_exit),
      SL_ALLOW_NR(__NR_exit_group),
      SL_ALLOW_NR(__NR_rt_sigreturn),
      // socket(): check the arguments (low 32 bits suffice for these values).
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_socket, 0, 8),
      SL_LOAD(args[0]),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET, 1, 0),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AF_INET6, 0, 5),
      SL_LOAD(args[1]),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SOCK_STREAM | SOCK_CLOEXEC, 0, 3),
      SL_LOAD(args[2]),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, 0, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS),
  };
  static sock_fprog prog = {static_cast<unsigned short>(sizeof filter / sizeof filter[0]), filter};
  // Not dumpable: another process of the same uid may not ptrace it or
  // take its channel with pidfd_getfd.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return false;
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return false;
  return syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) == 0;
}

void reply(unsigned char status, int fd) { sluice::agent::send_with_fd(kChannel, &status, 1, fd); }

}  // namespace

int main() {
  if (!confine()) return 1;
  while (true) {
    unsigned char family = 0;
    iovec iov{&family, 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    const ssize_t n = recvmsg(kChannel, &msg, 0);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      return 0;  // the agent is gone
    }
    if (family != 4 && family != 6) {
      reply(EINVAL, -1);
      continue;
    }
    const int fd = socket(family == 4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      reply(static_cast<unsigned char>(errno), -1);
      continue;
    }
    reply(0, fd);
    close(fd);
  }
}
