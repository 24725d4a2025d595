#include "resolver.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

#include <ares.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace sluice::agent {

namespace asio = boost::asio;

namespace {

struct Pending {
  explicit Pending(asio::io_context& io) : done(io) {
    done.expires_at(asio::steady_timer::time_point::max());
  }
  asio::steady_timer done;
  Result<Answer> result = error("resolution did not complete");
  bool completed = false;  // set when the callback ran, even synchronously
};

// One socket c-ares asked us to watch.
struct Watch {
  explicit Watch(asio::io_context& io, int fd) : desc(io, fd) {}
  asio::posix::stream_descriptor desc;
  bool read = false, write = false, reading = false, writing = false, closed = false;
};

}  // namespace

struct Resolver::Impl {
  asio::io_context& io;
  AgentConfig config;
  ares_channel channel = nullptr;
  asio::steady_timer timer;
  std::map<int, std::shared_ptr<Watch>> watches;

  Impl(asio::io_context& io_ctx, AgentConfig c) : io(io_ctx), config(std::move(c)), timer(io_ctx) {}

  ~Impl() {
    for (auto& [fd, w] : watches) {
      w->closed = true;
      w->desc.release();  // c-ares owns and closes the fd
    }
    if (channel) ares_destroy(channel);  // completes pending queries with ARES_EDESTRUCTION
  }

  static void on_sock_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* self = static_cast<Impl*>(data);
    auto it = self->watches.find(fd);
    if (!readable && !writable) {
      if (it != self->watches.end()) {
        it->second->closed = true;
        it->second->desc.cancel();
        it->second->desc.release();
        self->watches.erase(it);
      }
      return;
    }
    if (it == self->watches.end()) {
      it = self->watches.emplace(fd, std::make_shared<Watch>(self->io, fd)).first;
    }
    it->second->read = readable;
    it->second->write = writable;
    self->arm(fd, it->second);
  }

  void arm(int fd, const std::shared_ptr<Watch>& w) {
    if (w->read && !w->reading) {
      w->reading = true;
      w->desc.async_wait(asio::posix::descriptor_base::wait_read, [this, fd, w](auto ec) {
        w->reading = false;
        if (ec || w->closed) return;
        ares_process_fd(channel, fd, ARES_SOCKET_BAD);
        if (!w->closed) arm(fd, w);
        reschedule();
      });
    }
    if (w->write && !w->writing) {
      w->writing = true;
      w->desc.async_wait(asio::posix::descriptor_base::wait_write, [this, fd, w](auto ec) {
        w->writing = false;
        if (ec || w->closed) return;
        ares_process_fd(channel, ARES_SOCKET_BAD, fd);
        if (!w->closed) arm(fd, w);
        reschedule();
      });
    }
  }

  // c-ares' own retransmission and timeout clock.
  void reschedule() {
    timeval tv{};
    if (!ares_timeout(channel, nullptr, &tv)) {
      timer.cancel();
      return;
    }
    timer.expires_after(std::chrono::seconds(tv.tv_sec) + std::chrono::microseconds(tv.tv_usec));
    timer.async_wait([this](auto ec) {
      if (ec) return;
      ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
      reschedule();
    });
  }

  static void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* res) {
    auto* p = static_cast<Pending*>(arg);
    if (status != ARES_SUCCESS || !res) {
      p->result = error(std::string("DNS: ") + ares_strerror(status));
    } else {
      Answer a;
      std::uint32_t ttl = UINT32_MAX;
      for (ares_addrinfo_cname* c = res->cnames; c; c = c->next) {
        ttl = std::min<std::uint32_t>(ttl, static_cast<std::uint32_t>(std::max(c->ttl, 0)));
        if (c->name) a.cnames.emplace_back(c->name);
      }
      for (ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
        ttl = std::min<std::uint32_t>(ttl, static_cast<std::uint32_t>(std::max(n->ai_ttl, 0)));
        policy::IpAddr ip;
        if (n->ai_family == AF_INET) {
          const auto* sin = reinterpret_cast<const sockaddr_in*>(n->ai_addr);
          ip.family = policy::Family::v4;
          std::memcpy(ip.bytes.data(), &sin->sin_addr, 4);
        } else if (n->ai_family == AF_INET6) {
          const auto* sin6 = reinterpret_cast<const sockaddr_in6*>(n->ai_addr);
          char text[INET6_ADDRSTRLEN];
          inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof text);
          auto parsed = policy::parse_ip(text);  // normalises v4-mapped
          if (!parsed) continue;
          ip = *parsed;
        } else {
          continue;
        }
        if (std::find(a.addresses.begin(), a.addresses.end(), ip) == a.addresses.end()) {
          a.addresses.push_back(ip);
        }
      }
      ares_freeaddrinfo(res);
      if (a.addresses.empty()) {
        p->result = error("DNS: no address for the name");
      } else {
        a.ttl_s = ttl;
        p->result = std::move(a);
      }
    }
    p->completed = true;
    p->done.cancel();
  }
};

Resolver::Resolver(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Resolver::~Resolver() = default;

Result<std::unique_ptr<Resolver>> Resolver::create(asio::io_context& io, const AgentConfig& config) {
  static const int init = ares_library_init(ARES_LIB_INIT_ALL);
  if (init != ARES_SUCCESS) return error("c-ares init failed");
  auto impl = std::make_unique<Impl>(io, config);
  ares_options opts{};
  opts.sock_state_cb = &Impl::on_sock_state;
  opts.sock_state_cb_data = impl.get();
  opts.timeout = static_cast<int>(config.dns_timeout_ms / 2);
  opts.tries = 2;
  opts.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
  static char kLookups[] = "b";  // DNS only: never /etc/hosts
  opts.lookups = kLookups;
  opts.ndots = 0;
  const int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_FLAGS |
                   ARES_OPT_LOOKUPS | ARES_OPT_NDOTS;
  if (int rc = ares_init_options(&impl->channel, &opts, mask); rc != ARES_SUCCESS) {
    return error(std::string("c-ares: ") + ares_strerror(rc));
  }
  std::string csv;
  for (const DnsServer& s : config.dns_servers) {
    if (!csv.empty()) csv += ",";
    csv += s.addr.family == policy::Family::v6 ? "[" + s.addr.to_string() + "]" : s.addr.to_string();
    csv += ":" + std::to_string(s.port);
  }
  if (int rc = ares_set_servers_ports_csv(impl->channel, csv.c_str()); rc != ARES_SUCCESS) {
    return error(std::string("c-ares servers: ") + ares_strerror(rc));
  }
  return std::unique_ptr<Resolver>(new Resolver(std::move(impl)));
}

asio::awaitable<Result<Answer>> Resolver::resolve(std::string host) {
  const AgentConfig& c = impl_->config;
  const auto clamp = [&](std::uint32_t ttl) { return std::clamp(ttl, c.min_ttl_s, c.max_ttl_s); };
  if (auto it = c.static_hosts.find(host); it != c.static_hosts.end()) {
    co_return Answer{it->second, c.max_ttl_s, {}};
  }
  if (c.dns_servers.empty()) co_return error("DNS: no upstream servers configured");
  // A and AAAA as two queries: c-ares 1.18's AF_UNSPEC lookup can report
  // "no data" for a CNAME whose target has only one of the two families,
  // depending on which answer arrives last.
  std::shared_ptr<Pending> pending[2] = {std::make_shared<Pending>(impl_->io),
                                         std::make_shared<Pending>(impl_->io)};
  const int families[2] = {AF_INET, AF_INET6};
  for (int i = 0; i < 2; ++i) {
    ares_addrinfo_hints hints{};
    hints.ai_family = families[i];
    hints.ai_flags = ARES_AI_NOSORT;
    ares_getaddrinfo(impl_->channel, host.c_str(), nullptr, &hints, &Impl::on_answer,
                     pending[i].get());
  }
  impl_->reschedule();
  // on_answer cancels each timer; c-ares' own timeouts bound the wait. A
  // query may already have completed (synchronous failure): then there is
  // nothing to await.
  for (auto& p : pending) {
    if (!p->completed) co_await p->done.async_wait(asio::as_tuple(asio::use_awaitable));
  }
  Result<Answer>& v4 = pending[0]->result;
  Result<Answer>& v6 = pending[1]->result;
  if (!v4 && !v6) co_return std::move(v4);
  Answer merged;
  merged.ttl_s = UINT32_MAX;
  for (Result<Answer>* r : {&v4, &v6}) {
    if (!*r) continue;
    for (const auto& a : (*r)->addresses) {
      if (std::find(merged.addresses.begin(), merged.addresses.end(), a) == merged.addresses.end()) {
        merged.addresses.push_back(a);
      }
    }
    if ((*r)->cnames.size() > merged.cnames.size()) merged.cnames = (*r)->cnames;
    merged.ttl_s = std::min(merged.ttl_s, (*r)->ttl_s);
  }
  merged.ttl_s = clamp(merged.ttl_s);
  co_return merged;
}

}  // namespace sluice::agent
