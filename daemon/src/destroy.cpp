#include "destroy.h"

#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <vector>

namespace sluice::agent {
namespace {

struct Candidate {
  inet_diag_req_v2 req;
  LiveSocket sock;
};

class Netlink {
 public:
  Netlink() : fd_(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG)) {}
  ~Netlink() {
    if (fd_ >= 0) ::close(fd_);
  }
  Netlink(const Netlink&) = delete;
  Netlink& operator=(const Netlink&) = delete;
  [[nodiscard]] int fd() const { return fd_; }

  Status send(std::uint16_t type, std::uint16_t flags, const inet_diag_req_v2& req) {
    struct {
      nlmsghdr nh;
      inet_diag_req_v2 req;
    } msg{};
    msg.nh.nlmsg_len = sizeof msg;
    msg.nh.nlmsg_type = type;
    msg.nh.nlmsg_flags = NLM_F_REQUEST | flags;
    msg.nh.nlmsg_seq = ++seq_;
    msg.req = req;
    sockaddr_nl kernel{};
    kernel.nl_family = AF_NETLINK;
    ssize_t sent = 0;
    do {
      sent = ::sendto(fd_, &msg, sizeof msg, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel);
    } while (sent < 0 && errno == EINTR);
    if (sent < 0) return errno_error("sock_diag send");
    return {};
  }

 private:
  int fd_;
  std::uint32_t seq_ = 0;
};

policy::IpAddr address_of(int family, const __be32* raw) {
  policy::IpAddr a;
  if (family == AF_INET) {
    a.family = policy::Family::v4;
    std::memcpy(a.bytes.data(), raw, 4);
    return a;
  }
  std::memcpy(a.bytes.data(), raw, 16);
  static const std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a.bytes.data(), kMapped, 12) == 0) {
    return policy::IpAddr::v4(a.bytes[12], a.bytes[13], a.bytes[14], a.bytes[15]);
  }
  a.family = policy::Family::v6;
  return a;
}

bool unspecified(const policy::IpAddr& a) {
  for (std::uint8_t b : a.bytes) {
    if (b) return false;
  }
  return true;
}

// Dumps one (family, protocol) and collects the sockets of `cgroups`.
Status collect(int family, int protocol, const std::set<std::uint64_t>& cgroups,
               std::vector<Candidate>& out) {
  Netlink nl;
  if (nl.fd() < 0) return errno_error("sock_diag socket");
  inet_diag_req_v2 req{};
  req.sdiag_family = static_cast<std::uint8_t>(family);
  req.sdiag_protocol = static_cast<std::uint8_t>(protocol);
  // Every state but LISTEN and TIME_WAIT: those have no live peer to cut.
  req.idiag_states = ~((1u << 10) | (1u << 6));
  if (auto s = nl.send(SOCK_DIAG_BY_FAMILY, NLM_F_DUMP, req); !s) return s;

  std::vector<char> buf(64 * 1024);
  // Bounded: a dump of even a million sockets ends well within this.
  for (int round = 0; round < 1'000'000; ++round) {
    const ssize_t n = ::recv(nl.fd(), buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno_error("sock_diag recv");
    }
    int len = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, len);
         h = NLMSG_NEXT(h, len)) {
      if (h->nlmsg_type == NLMSG_DONE) return {};
      if (h->nlmsg_type == NLMSG_ERROR) {
        const auto* e = static_cast<const nlmsgerr*>(NLMSG_DATA(h));
        return tl::unexpected(SysError{-e->error, "sock_diag dump"});
      }
      const auto* msg = static_cast<const inet_diag_msg*>(NLMSG_DATA(h));
      std::uint64_t cgroup = 0;
      int alen = static_cast<int>(h->nlmsg_len - NLMSG_LENGTH(sizeof *msg));
      for (auto* a = reinterpret_cast<rtattr*>(const_cast<inet_diag_msg*>(msg) + 1);
           RTA_OK(a, alen); a = RTA_NEXT(a, alen)) {
        if (a->rta_type == INET_DIAG_CGROUP_ID && RTA_PAYLOAD(a) >= sizeof(std::uint64_t)) {
          std::memcpy(&cgroup, RTA_DATA(a), sizeof cgroup);
        }
      }
      if (!cgroups.contains(cgroup)) continue;
      LiveSocket s{cgroup, address_of(msg->idiag_family, msg->id.idiag_dst),
                   ntohs(msg->id.idiag_dport), protocol};
      if (unspecified(s.dst)) continue;  // unconnected UDP: judged per send
      Candidate c{};
      c.req.sdiag_family = msg->idiag_family;
      c.req.sdiag_protocol = static_cast<std::uint8_t>(protocol);
      c.req.idiag_states = 1u << msg->idiag_state;
      c.req.id = msg->id;  // includes the cookie: exactly this socket
      c.sock = s;
      out.push_back(c);
    }
  }
  return error("sock_diag dump did not end");
}

}  // namespace

Result<int> destroy_sockets(const std::set<std::uint64_t>& cgroups, const KeepFn& keep) {
  if (cgroups.empty()) return 0;
  std::vector<Candidate> found;
  for (int family : {AF_INET, AF_INET6}) {
    for (int protocol : {IPPROTO_TCP, IPPROTO_UDP}) {
      if (auto s = collect(family, protocol, cgroups, found); !s) return tl::unexpected(s.error());
    }
  }
  Netlink nl;
  if (nl.fd() < 0) return errno_error("sock_diag socket");
  int destroyed = 0;
  for (const Candidate& c : found) {
    if (keep(c.sock)) continue;
    if (auto s = nl.send(SOCK_DESTROY, NLM_F_ACK, c.req); !s) return tl::unexpected(s.error());
    char ack[512];
    ssize_t n = 0;
    do {
      n = ::recv(nl.fd(), ack, sizeof ack, 0);  // a signal (the agent's stop) must not lose the ack
    } while (n < 0 && errno == EINTR);
    if (n < 0) return errno_error("sock_diag destroy ack");
    const auto* h = reinterpret_cast<const nlmsghdr*>(ack);
    if (h->nlmsg_type == NLMSG_ERROR) {
      const int err = -static_cast<const nlmsgerr*>(NLMSG_DATA(h))->error;
      // ENOENT: the socket closed meanwhile. Anything else is a failure:
      // a revoked connection that stays open is a broken promise.
      if (err != 0 && err != ENOENT) return tl::unexpected(SysError{err, "SOCK_DESTROY"});
      if (err == 0) ++destroyed;
    }
  }
  return destroyed;
}

}  // namespace sluice::agent
