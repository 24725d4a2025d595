// The local admin socket (<runtime_dir>/mcpd-admin.sock): one JSON request
// line, one JSON reply line, from peers whose uid is configured. How the
// first tenant and super-admin key come to exist (sluicectl bootstrap)
// before any key can authenticate anything.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <nlohmann/json.hpp>

#include "status.h"

namespace sluice::mcpd {

class LocalAdmin {
 public:
  using Handler = std::function<nlohmann::json(const nlohmann::json&)>;
  // `handler` blocks (durable audit records, policy pushes): it runs on
  // `worker`, never on an I/O thread.
  LocalAdmin(boost::asio::io_context& io, std::vector<std::uint32_t> uids, Handler handler,
             boost::asio::any_io_executor worker)
      : io_(io), uids_(std::move(uids)), handler_(std::move(handler)), worker_(std::move(worker)) {}
  Status listen(const std::string& path);
  // Closes the acceptor and removes the socket's path: call it once no
  // thread runs the io_context.
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(boost::asio::local::stream_protocol::socket s);

  boost::asio::io_context& io_;
  std::vector<std::uint32_t> uids_;
  Handler handler_;
  boost::asio::any_io_executor worker_;
  std::string path_;
  std::unique_ptr<boost::asio::local::stream_protocol::acceptor> acceptor_;
};

}  // namespace sluice::mcpd
