// GCC 12's false -Wmismatched-new-delete on nested Asio coroutine frames
// (run_on below); see mcp.cpp.
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"

#include "local_admin.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/streambuf.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include "offload.h"
#include "text.h"

namespace sluice::mcpd {
namespace asio = boost::asio;
using local = asio::local::stream_protocol;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
// A tenant policy (at most 2 MiB) escaped into a JSON string fits.
constexpr std::size_t kMaxRequest = 5 * 1024 * 1024;

Status LocalAdmin::listen(const std::string& path) {
  // The directory must be this user's and writable by no one else: where
  // another user could write, they could put a socket of their own in
  // this one's place, and sluicectl would hand it its requests (policies,
  // new keys) and believe its answers.
  const auto slash = path.find_last_of('/');
  const std::string dir = slash == std::string::npos ? std::string() : path.substr(0, slash);
  struct stat st {};
  if (dir.empty() || ::lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || st.st_uid != ::geteuid() ||
      (st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return fail("admin socket " + path + ": its directory must be a real directory of sluice-mcpd's user, "
                "writable by no one else (runtime_dir)");
  }
  ::unlink(path.c_str());
  boost::system::error_code ec;
  auto acc = std::make_unique<local::acceptor>(io_);
  acc->open(local(), ec);
  if (!ec) acc->bind(local::endpoint(path), ec);
  if (!ec) acc->listen(16, ec);
  if (ec) return fail("admin socket " + path + ": " + ec.message());
  ::chmod(path.c_str(), 0600);
  path_ = path;
  acceptor_ = std::move(acc);
  asio::co_spawn(io_, accept_loop(), asio::detached);
  return {};
}

void LocalAdmin::stop() {
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
    ::unlink(path_.c_str());
  }
}

asio::awaitable<void> LocalAdmin::accept_loop() {
  while (acceptor_ && acceptor_->is_open()) {
    // Each connection on its own strand: its deadline and its reads never
    // run at once on the io_context's several threads.
    auto [ec, s] = co_await acceptor_->async_accept(asio::make_strand(io_), kTuple);
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      // Out of descriptors and the like: back off briefly rather than spin
      // a thread the HTTPS side shares.
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
      continue;
    }
    auto ex = s.get_executor();
    asio::co_spawn(ex, serve(std::move(s)), asio::detached);
  }
}

namespace {

asio::awaitable<void> send_line(local::socket& s, nlohmann::json j) {
  const std::string line = j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
  co_await asio::async_write(s, asio::buffer(line), kTuple);
}

bool peer_allowed(int fd, const std::vector<std::uint32_t>& uids) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
  return std::find(uids.begin(), uids.end(), cred.uid) != uids.end();
}

}  // namespace

asio::awaitable<void> LocalAdmin::serve(local::socket s) {
  if (!peer_allowed(s.native_handle(), uids_)) {
    nlohmann::json refusal = {{"ok", false}, {"error", "peer not allowed"}};
    co_await send_line(s, std::move(refusal));
    co_return;
  }
  // One request, bounded in size and time.
  asio::steady_timer deadline(s.get_executor(), std::chrono::seconds(10));
  deadline.async_wait([&s](boost::system::error_code ec) {
    if (!ec) {
      boost::system::error_code ignored;
      s.close(ignored);
    }
  });
  asio::streambuf buf(kMaxRequest);
  auto [ec, n] = co_await asio::async_read_until(s, buf, '\n', kTuple);
  deadline.cancel();
  if (ec) {
    nlohmann::json refusal = {{"ok", false}, {"error", "request too large or incomplete"}};
    if (s.is_open()) co_await send_line(s, std::move(refusal));
    co_return;
  }
  const std::string line(static_cast<const char*>(buf.data().data()), n);
  auto parsed = parse_json(line);
  const nlohmann::json req = parsed ? std::move(*parsed) : nlohmann::json();
  if (!req.is_object()) {
    nlohmann::json refusal = {{"ok", false}, {"error", "request must be a JSON object"}};
    co_await send_line(s, std::move(refusal));
    co_return;
  }
  std::function<nlohmann::json()> work = [this, &req] {
    try {
      return handler_(req);
    } catch (const std::exception&) {
      return nlohmann::json{{"ok", false}, {"error", "internal error"}};
    }
  };
  nlohmann::json reply = co_await run_on<nlohmann::json>(worker_, std::move(work));
  co_await send_line(s, std::move(reply));
}

}  // namespace sluice::mcpd
