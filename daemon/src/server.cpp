#include "server.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <iostream>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "control.h"
#include "fd_passing.h"

namespace sluice::agent {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using local = asio::local::stream_protocol;
using namespace asio::experimental::awaitable_operators;
using namespace std::chrono_literals;

namespace {

constexpr auto kIoTimeout = 30s;     // a peer that stalls mid-message is dropped
constexpr auto kIdleTimeout = 300s;  // an idle connection is closed
constexpr std::size_t kMaxSessions = 64;
constexpr std::size_t kMaxRefusing = 16;  // refused peers lingering at once
constexpr int kMaxRefusalReportsPerMinute = 10;
constexpr auto nothrow = asio::as_tuple(use_awaitable);

}  // namespace

struct Server::Impl {
  asio::io_context& io;
  Agent& agent;
  Resolver& resolver;
  local::acceptor acceptor;
  asio::posix::stream_descriptor events;
  std::size_t sessions = 0;
  std::size_t refusing_ = 0;
  std::chrono::steady_clock::time_point refusal_window_{};
  int refusals_in_window_ = 0;

  Impl(asio::io_context& ctx, Agent& a, Resolver& r)
      : io(ctx), agent(a), resolver(r), acceptor(ctx), events(ctx) {}

  ~Impl() {
    // The ring buffer's epoll fd belongs to libbpf.
    if (events.is_open()) events.release();
  }

  bool peer_allowed(int fd, ucred& cred) {
    socklen_t len = sizeof cred;
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
    if (cred.uid == 0) return true;
    const auto& uids = agent.config().allowed_peer_uids;
    return std::find(uids.begin(), uids.end(), cred.uid) != uids.end();
  }

  // Reads exactly `size` bytes, or fails on error or timeout.
  awaitable<bool> read_exact(local::socket& s, void* data, std::size_t size,
                             std::chrono::seconds timeout) {
    asio::steady_timer timer(io);
    timer.expires_after(timeout);
    auto result = co_await (asio::async_read(s, asio::buffer(data, size), nothrow) ||
                            timer.async_wait(nothrow));
    if (result.index() != 0) co_return false;  // timed out
    auto [ec, n] = std::get<0>(result);
    co_return !ec && n == size;
  }

  // Writes one framed message, optionally passing `fd` with SCM_RIGHTS.
  // Takes the reply by value: a coroutine must own what it reads after a
  // suspension.
  awaitable<bool> send(local::socket& s, nlohmann::json reply, int fd = -1) {
    // Replace, never throw, on invalid UTF-8 (a process name, say).
    const std::string body = reply.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    const std::uint32_t len = htonl(static_cast<std::uint32_t>(body.size()));
    std::string frame(reinterpret_cast<const char*>(&len), 4);
    frame += body;
    if (fd < 0) {
      asio::steady_timer timer(io);
      timer.expires_after(kIoTimeout);
      auto result = co_await (asio::async_write(s, asio::buffer(frame), nothrow) ||
                              timer.async_wait(nothrow));
      co_return result.index() == 0 && !std::get<0>(std::get<0>(result));
    }
    {
      // Bounded like every other wait: a peer that never reads loses its
      // session instead of holding it.
      asio::steady_timer timer(io);
      timer.expires_after(kIoTimeout);
      auto ready = co_await (s.async_wait(local::socket::wait_write, nothrow) ||
                             timer.async_wait(nothrow));
      if (ready.index() != 0 || std::get<0>(std::get<0>(ready))) co_return false;
    }
    // Replies are small: one sendmsg carries the frame (the socket buffer
    // of a Unix socket is far larger), so the fd travels with byte 0.
    const ssize_t n = send_with_fd(s.native_handle(), frame.data(), frame.size(), fd);
    co_return n == static_cast<ssize_t>(frame.size());
  }

  awaitable<nlohmann::json> handle(const Request& request, int& fd_out) {
    if (const auto* r = std::get_if<ApplyRequest>(&request)) {
      auto done = agent.apply(r->tenant, r->version, r->rules);
      if (!done) co_return error_reply("failed", done.error().to_string());
      co_return nlohmann::json{{"ok", true}, {"generation", done->generation},
                               {"destroyed", done->destroyed}};
    }
    if (const auto* r = std::get_if<RemoveRequest>(&request)) {
      auto done = agent.remove(r->tenant);
      if (!done) co_return error_reply("failed", done.error().to_string());
      co_return nlohmann::json{{"ok", true}, {"generation", done->generation},
                               {"destroyed", done->destroyed}};
    }
    if (const auto* r = std::get_if<ResolveRequest>(&request)) {
      // Refused before any query: a name off the policy is never resolved.
      if (auto allowed = agent.name_allowed(r->tenant, r->purpose, r->host, r->port); !allowed) {
        co_return error_reply("not_allowed", allowed.error().what);
      }
      auto answer = co_await resolver.resolve(r->host);
      if (!answer) co_return error_reply("failed", answer.error().what);
      // Pinned in both layers before the answer returns.
      if (auto pinned = agent.pin(r->tenant, r->purpose, r->host, r->port, answer->addresses,
                                  answer->ttl_s);
          !pinned) {
        co_return error_reply("not_allowed", pinned.error().to_string());
      }
      nlohmann::json addrs = nlohmann::json::array();
      for (const auto& a : answer->addresses) addrs.push_back(a.to_string());
      co_return nlohmann::json{{"ok", true}, {"addresses", addrs}, {"ttl", answer->ttl_s},
                               {"cnames", answer->cnames}};
    }
    if (const auto* r = std::get_if<SocketRequest>(&request)) {
      auto fd = agent.socket(r->tenant, r->purpose, r->family);
      if (!fd) co_return error_reply("failed", fd.error().to_string());
      fd_out = *fd;
      co_return nlohmann::json{{"ok", true}};
    }
    if (std::get_if<StatusRequest>(&request)) {
      nlohmann::json s = agent.status();
      s["ok"] = true;
      co_return s;
    }
    const auto& r = std::get<EventsRequest>(request);
    agent.poll_events();
    nlohmann::json e = agent.events_since(r.cursor, r.max);
    e["ok"] = true;
    co_return e;
  }

  // A refused peer gets its answer and at most one second of lingering
  // (discarding what it sends, so its request does not hit a closed socket
  // before it reads the reply). It never holds a session slot, and its log
  // line and event are rate-limited: refusals cannot crowd out the service
  // or the event log.
  awaitable<void> refuse(local::socket s, ucred cred) {
    const auto now = std::chrono::steady_clock::now();
    if (now - refusal_window_ > 60s) {
      refusal_window_ = now;
      refusals_in_window_ = 0;
    }
    if (++refusals_in_window_ <= kMaxRefusalReportsPerMinute) {
      std::cerr << "sluice-agent: refused control peer uid " << cred.uid << " pid " << cred.pid
                << "\n";
      agent.record("peer_refused", {{"uid", cred.uid}, {"pid", cred.pid}});
    }
    co_await send(s, error_reply("forbidden", "peer not allowed"));
    boost::system::error_code ignored;
    s.shutdown(local::socket::shutdown_send, ignored);
    asio::steady_timer deadline(io);
    deadline.expires_after(1s);
    char sink[4096];
    while (true) {
      auto r = co_await (s.async_read_some(asio::buffer(sink), nothrow) || deadline.async_wait(nothrow));
      if (r.index() != 0 || std::get<0>(std::get<0>(r))) break;
    }
  }

  awaitable<void> session(local::socket s) {
    std::string body;
    while (true) {
      std::uint32_t len_be = 0;
      if (!co_await read_exact(s, &len_be, 4, std::chrono::duration_cast<std::chrono::seconds>(kIdleTimeout))) {
        co_return;
      }
      const std::uint32_t len = ntohl(len_be);
      if (len == 0 || len > kMaxMessage) {
        co_await send(s, error_reply("bad_request", "message size out of bounds"));
        co_return;  // the stream cannot be resynchronised
      }
      body.resize(len);
      if (!co_await read_exact(s, body.data(), len, kIoTimeout)) co_return;
      auto request = parse_request(body, agent.deny_options());
      int fd = -1;
      // No co_await inside a conditional expression: GCC 12 miscompiles it.
      nlohmann::json reply;
      if (request) {
        reply = co_await handle(*request, fd);
      } else {
        reply = error_reply(request.error().code, request.error().message);
      }
      const bool sent = co_await send(s, std::move(reply), fd);
      if (fd >= 0) ::close(fd);
      if (!sent) co_return;
    }
  }

  awaitable<void> accept_loop() {
    while (true) {
      auto [ec, s] = co_await acceptor.async_accept(nothrow);
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        // EMFILE and friends: keep serving the others, without spinning
        // on a backlog that cannot be taken until a descriptor is free.
        asio::steady_timer pause(io);
        pause.expires_after(50ms);
        co_await pause.async_wait(nothrow);
        continue;
      }
      ucred cred{};
      if (!peer_allowed(s.native_handle(), cred)) {
        if (refusing_ < kMaxRefusing) {
          ++refusing_;
          asio::co_spawn(io, refuse(std::move(s), cred),
                         [this](std::exception_ptr) { --refusing_; });
        }
        continue;  // beyond that, refused peers are simply closed
      }
      if (sessions >= kMaxSessions) continue;  // closes `s`
      ++sessions;
      // The completion handler runs however the session ends, exceptions
      // included, so a slot is never lost.
      asio::co_spawn(io, session(std::move(s)), [this](std::exception_ptr e) {
        --sessions;
        if (e) std::cerr << "sluice-agent: a control session ended by an exception\n";
      });
    }
  }

  awaitable<void> event_loop() {
    while (true) {
      auto [ec] = co_await events.async_wait(asio::posix::descriptor_base::wait_read, nothrow);
      if (ec) co_return;
      agent.poll_events();
    }
  }

  awaitable<void> maintenance_loop() {
    asio::steady_timer timer(io);
    auto next_tamper = std::chrono::steady_clock::now();
    while (true) {
      timer.expires_after(250ms);
      auto [ec] = co_await timer.async_wait(nothrow);
      if (ec) co_return;
      agent.expire_pins();
      agent.reap_brokers();
      if (std::chrono::steady_clock::now() >= next_tamper) {
        next_tamper += std::chrono::milliseconds(agent.config().tamper_check_ms);
        auto repaired = agent.tamper_check();
        if (!repaired) {
          std::cerr << "sluice-agent: tamper check failed: " << repaired.error().to_string() << "\n";
        } else if (!repaired->empty()) {
          std::cerr << "sluice-agent: tamper detected and repaired: " << *repaired << "\n";
        }
        if (auto cut = agent.retry_cuts(); !cut) {
          std::cerr << "sluice-agent: cutting revoked connections failed again: " << cut.error().to_string() << "\n";
        }
      }
    }
  }
};

Server::Server(asio::io_context& io, Agent& agent, Resolver& resolver)
    : impl_(std::make_unique<Impl>(io, agent, resolver)) {}
Server::~Server() = default;

Status Server::start() {
  const std::string path = impl_->agent.config().control_socket();
  ::unlink(path.c_str());
  boost::system::error_code ec;
  impl_->acceptor.open(local(), ec);
  if (!ec) impl_->acceptor.bind(local::endpoint(path), ec);
  if (!ec) impl_->acceptor.listen(16, ec);
  if (ec) return error("control socket " + path + ": " + ec.message());
  // SO_PEERCRED decides who is served. Any local user may connect, so
  // that a refused peer is answered and logged rather than silently kept out.
  ::chmod(path.c_str(), 0666);
  impl_->events.assign(impl_->agent.events_fd(), ec);
  if (ec) return error("ring buffer fd: " + ec.message());
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  asio::co_spawn(impl_->io, impl_->event_loop(), asio::detached);
  // Pin expiry and the tamper check must never stop silently.
  asio::co_spawn(impl_->io, impl_->maintenance_loop(), [](std::exception_ptr e) {
    if (e) {
      std::cerr << "sluice-agent: maintenance loop failed; exiting so the supervisor restarts it\n";
      std::abort();
    }
  });
  return {};
}

}  // namespace sluice::agent
