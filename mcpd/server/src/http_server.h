// HTTPS transport: Beast over TLS, one coroutine per connection, a
// deadline before every step. The session only does I/O; what a request
// means is the handler's business (app.h). Limits: connections, header
// bytes (431), body bytes (413), time to read a request, keep-alive idle.
#pragma once

#include <any>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <variant>
#include <vector>

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>

#include <nlohmann/json.hpp>

#include "event_stream.h"
#include "status.h"

namespace sluice::mcpd {

using HttpRequest = boost::beast::http::request<boost::beast::http::string_body>;
using RequestHeader = boost::beast::http::request_header<>;
using HttpResponse = boost::beast::http::response<boost::beast::http::string_body>;
// What a handler answers: a whole response, or (stream set) the head of a
// response whose body is the stream's events, sent chunked as produced,
// until the stream is done, the reader is detached or its hold passes.
struct HttpReply {
  HttpResponse response;
  std::shared_ptr<StreamReader> stream;
  std::shared_ptr<const void> keep;  // dropped once the response is written (or the connection is)
};
// Every request's header is looked at before its body is read: a client
// without a key must not make the server hold a body's worth of memory per
// connection. The check decides either a response to send instead (the
// connection then closes) or what the handler goes on with, once the body
// is read (the check's own state: who was admitted, say).
using Admission = std::variant<HttpResponse, std::any>;
using HeaderCheck = std::function<Admission(const RequestHeader&, const std::string& client_addr)>;
using HttpHandler = std::function<boost::asio::awaitable<HttpReply>(HttpRequest, std::any admitted)>;

struct HttpLimits {
  std::size_t max_connections = 1024;
  // Per client address (an IPv6 client's /64): one host cannot take all
  // connections.
  std::size_t max_connections_per_client = 64;
  // Peers (normalised addresses: the trusted proxies) that carry many
  // clients' connections: only max_connections bounds theirs. Capped per
  // address, one client's streams through the proxy would refuse everyone.
  std::vector<std::string> uncapped_peers;
  std::size_t header_limit = 16 * 1024;
  std::size_t body_limit = 1024 * 1024;
  std::chrono::milliseconds handshake_timeout{10000};
  std::chrono::milliseconds request_timeout{30000};
  std::chrono::milliseconds idle_timeout{60000};
};

class HttpServer {
 public:
  HttpServer(boost::asio::io_context& io, boost::asio::ssl::context& tls, HttpLimits limits,
             HeaderCheck header_check, HttpHandler handler);
  // Binds and starts accepting; returns where it listens (port 0: any).
  Result<boost::asio::ip::tcp::endpoint> listen(const std::string& address, std::uint16_t port);
  // Accepts on an inherited listening socket (systemd socket activation);
  // returns where it listens, not what the configuration says.
  Result<boost::asio::ip::tcp::endpoint> adopt(int fd);
  // Closes the acceptor: call it once no thread runs the io_context (an
  // acceptor is not safe to close while its loop may be starting an
  // accept on another thread).
  void stop();
  [[nodiscard]] std::size_t connections() const { return open_->load(); }
  [[nodiscard]] std::uint64_t refused() const { return refused_->load(); }

 private:
  boost::asio::awaitable<void> accept_loop();
  using TlsStream = boost::asio::ssl::stream<boost::beast::tcp_stream>;
  // A connection's place in the counts, all and its client's; given back
  // when destroyed.
  class Ticket;
  boost::asio::awaitable<void> session(boost::asio::ip::tcp::socket socket, std::shared_ptr<Ticket> ticket);
  enum class Accepted { ok, failed, closed };
  boost::asio::awaitable<Accepted> accept_one();
  Admission checked_header(const RequestHeader& head, const std::string& client);
  boost::asio::awaitable<bool> write_events(TlsStream& stream, const HttpResponse& head, StreamReader& events);

  boost::asio::io_context& io_;
  boost::asio::ssl::context& tls_;
  HttpLimits limits_;
  HeaderCheck header_check_;
  HttpHandler handler_;
  std::unique_ptr<boost::asio::ip::tcp::acceptor> acceptor_;
  std::shared_ptr<std::atomic<std::size_t>> open_ = std::make_shared<std::atomic<std::size_t>>(0);
  struct PerClient {
    std::mutex mu;
    std::unordered_map<std::string, std::size_t> open;
  };
  std::shared_ptr<PerClient> per_client_ = std::make_shared<PerClient>();
  std::shared_ptr<std::atomic<std::uint64_t>> refused_ = std::make_shared<std::atomic<std::uint64_t>>(0);
};

// The unit a client address counts as, for connection caps and lockout:
// an IPv4 address, an IPv6 client's /64 ("2001:db8::/64"); v4-mapped IPv6
// counts as its IPv4 address.
std::string client_block(const boost::asio::ip::address& address);

// The client a request is from: the TCP peer, unless the peer is one of
// `trusted_proxies` (normalised addresses) and sent X-Forwarded-For; then
// the rightmost entry of that header (the address the proxy itself saw),
// normalised. Anything unparsable leaves the peer: the proxy answers for it.
std::string forwarded_client(const std::string& peer, std::string_view forwarded_for,
                             const std::vector<std::string>& trusted_proxies);

// A response with a body and the usual headers (no caching, nosniff).
HttpResponse make_response(unsigned status, std::string body, std::string content_type,
                           unsigned version = 11);
// The same with a JSON body; `problem` answers {"error": message}.
HttpResponse json_response(unsigned status, const nlohmann::json& body, unsigned version = 11);
HttpResponse problem(unsigned status, const std::string& message, unsigned version = 11);

// The request's path without its query, one query parameter's raw value
// ("" when absent), one header's value ("" when absent).
std::string request_path(const RequestHeader& req);
std::string query_value(const HttpRequest& req, std::string_view key);
std::string header_value(const RequestHeader& req, std::string_view name);
// The value of the header's last line: a header repeated over several lines
// reads as their values joined in order (RFC 9110 5.3), so its rightmost
// entry is the last line's. (A proxy may add a line of its own rather than
// extend the client's.)
std::string last_header_value(const RequestHeader& req, std::string_view name);

}  // namespace sluice::mcpd
