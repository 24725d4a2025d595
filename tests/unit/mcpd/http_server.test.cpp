// HttpServer over real TLS on loopback: what a reply keeps alive lives
// exactly as long as its response is being written.
#include "http_server.h"

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <catch2/catch.hpp>

#include "temp_dir.h"
#include "tls.h"

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using asio::ip::tcp;
using namespace sluice::mcpd;
using sluice::testing::TempDir;

namespace {

constexpr std::size_t kBody = 16 << 20;  // past what loopback buffers take from an unread socket

// A server on 127.0.0.1 whose every reply is a `body`-byte answer
// keeping `released` false until the reply is dropped.
struct Served {
  TempDir dir;
  asio::io_context io;
  ssl::context tls{ssl::context::tls_server};
  std::shared_ptr<std::atomic<bool>> released = std::make_shared<std::atomic<bool>>(false);
  std::unique_ptr<HttpServer> server;
  tcp::endpoint at;
  std::thread runner;

  explicit Served(HttpLimits limits = {}, std::size_t body = kBody) {
    auto files = locate_tls("", "", dir.path());
    REQUIRE(files);
    REQUIRE(configure_tls(tls, *files));
    server = std::make_unique<HttpServer>(
        io, tls, limits,
        [](const RequestHeader&, const std::string&) -> Admission { return std::any{}; },
        [flag = released, body](HttpRequest, std::any) -> asio::awaitable<HttpReply> {
          std::shared_ptr<const void> keep(new int(0), [flag](const int* p) {
            delete p;
            flag->store(true);
          });
          co_return HttpReply{make_response(200, std::string(body, 'x'), "text/plain"), nullptr, std::move(keep)};
        });
    auto ep = server->listen("127.0.0.1", 0);
    REQUIRE(ep);
    at = *ep;
    runner = std::thread([this] { io.run(); });
  }
  ~Served() {
    io.stop();
    runner.join();
    server->stop();
  }
  Served(const Served&) = delete;
  Served& operator=(const Served&) = delete;

  [[nodiscard]] bool released_within(std::chrono::milliseconds limit) const {
    const auto end = std::chrono::steady_clock::now() + limit;
    while (!released->load()) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }
};

struct Client {
  asio::io_context io;
  ssl::context tls{ssl::context::tls_client};
  std::unique_ptr<ssl::stream<tcp::socket>> stream;

  // Connected, with `request` sent (none: nothing sent yet).
  explicit Client(const tcp::endpoint& at,
                  const std::string& request = "GET /big HTTP/1.1\r\nHost: localhost\r\n\r\n") {
    tls.set_verify_mode(ssl::verify_none);  // the test's own self-signed pair
    stream = std::make_unique<ssl::stream<tcp::socket>>(io, tls);
    // A small receive buffer, set before connecting (the window follows
    // it): the answer must not fit in the sockets' buffers, whatever the
    // host's tcp_rmem.
    stream->next_layer().open(at.protocol());
    stream->next_layer().set_option(asio::socket_base::receive_buffer_size(16 * 1024));
    stream->next_layer().connect(at);
    stream->handshake(ssl::stream_base::client);
    if (!request.empty()) asio::write(*stream, asio::buffer(request));
  }
  std::string read(std::size_t n) {
    std::string buf(n, '\0');
    buf.resize(asio::read(*stream, asio::buffer(buf)));
    return buf;
  }
};

}  // namespace

TEST_CASE("mcpd::HttpServer: a reply's keep lives until its response is written", "[mcpd][http]") {
  Served s;
  Client c(s.at);
  const std::string start = c.read(4096);  // the answer has begun
  const auto head_end = start.find("\r\n\r\n");
  REQUIRE(head_end != std::string::npos);
  // The client reads no more: the rest waits in the server, and so does what the reply keeps.
  CHECK_FALSE(s.released_within(std::chrono::milliseconds(500)));
  // Read the rest.
  const std::size_t whole = head_end + 4 + kBody;
  std::size_t got = start.size();
  boost::system::error_code ec;
  std::string buf(1 << 16, '\0');
  while (got < whole && !ec) got += c.stream->read_some(asio::buffer(buf), ec);
  REQUIRE_FALSE(ec);
  CHECK(got == whole);
  CHECK(s.released_within(std::chrono::seconds(5)));
}

TEST_CASE("mcpd::HttpServer: a reply's keep goes when its client does", "[mcpd][http]") {
  Served s;
  {
    Client c(s.at);
    REQUIRE(c.read(4096).size() == 4096);
    CHECK_FALSE(s.released_within(std::chrono::milliseconds(300)));
    boost::system::error_code ec;
    c.stream->next_layer().close(ec);  // gone mid-answer, unread bytes and all: a reset
  }
  CHECK(s.released_within(std::chrono::seconds(5)));
}

namespace {

// A server whose requests must arrive within 1 s, idle waits 20 s, and
// every answer "xx".
HttpLimits timed_limits() {
  HttpLimits limits;
  limits.request_timeout = std::chrono::milliseconds(1000);
  limits.idle_timeout = std::chrono::seconds(20);
  return limits;
}

// Sends `parts` one by one, `gap` before each but the first (ignoring a
// closed connection), then reads what comes back until an answer is whole,
// the server closes or 5 s pass.
std::string exchange(Client& c, const std::vector<std::string>& parts, std::chrono::milliseconds gap) {
  boost::system::error_code ec;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    if (i) std::this_thread::sleep_for(gap);
    asio::write(*c.stream, asio::buffer(parts[i]), ec);
  }
  const timeval wait{5, 0};
  ::setsockopt(c.stream->next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  std::string got, buf(4096, '\0');
  while (got.find("\r\n\r\nxx") == std::string::npos) {
    const std::size_t n = c.stream->read_some(asio::buffer(buf), ec);
    if (ec) break;
    got.append(buf, 0, n);
  }
  return got;
}

}  // namespace

TEST_CASE("mcpd::HttpServer: a request arrives whole, header and body, within the request timeout of its first byte",
          "[mcpd][http]") {
  Served s(timed_limits(), 2);
  Client c(s.at, "");
  const std::string head = "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n";
  // A first request at once is answered, and the connection stays.
  REQUIRE(exchange(c, {head + "\r\nab"}, std::chrono::milliseconds(0)).find("200 OK") != std::string::npos);
  const auto started = std::chrono::steady_clock::now();
  SECTION("a header trickled past it: closed, though the idle timeout is far off") {
    std::vector<std::string> parts = {head};
    for (int i = 0; i < 8; ++i) parts.push_back("X-Slow: " + std::to_string(i) + "\r\n");
    parts.push_back("\r\nab");
    CHECK(exchange(c, parts, std::chrono::milliseconds(200)).empty());
  }
  SECTION("a header and a body each within it, together past it: closed") {
    CHECK(exchange(c, {head, "X-Slow: 1\r\n", "\r\n", "a", "b"}, std::chrono::milliseconds(350)).empty());
  }
  CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(4));
}

TEST_CASE("mcpd::HttpServer: a connection's first request has the request timeout from the handshake on",
          "[mcpd][http]") {
  Served s(timed_limits(), 2);
  Client c(s.at, "");
  // The first byte late (0.7 s), the rest 0.7 s after it: each part in
  // time alone, not together. (The first part is empty: nothing sent.)
  CHECK(exchange(c, {"", "POST /x HTTP/1.1\r\n", "Host: localhost\r\nContent-Length: 2\r\n\r\nab"},
                 std::chrono::milliseconds(700))
            .empty());
}

namespace {

// Whether a new connection gets its request answered (a refused one is
// closed at once: the handshake or the read fails).
bool answered(const tcp::endpoint& at) {
  try {
    Client c(at, "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab");
    const timeval wait{5, 0};
    ::setsockopt(c.stream->next_layer().native_handle(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
    return c.read(12).find("200") != std::string::npos;
  } catch (const std::exception&) {
    return false;
  }
}

}  // namespace

TEST_CASE("mcpd::HttpServer: connections are capped per client address, but for a trusted proxy's", "[mcpd][http]") {
  HttpLimits limits;
  limits.max_connections = 8;
  limits.max_connections_per_client = 2;
  SECTION("one address holds at most its share") {
    Served s(limits, 2);
    Client a(s.at, ""), b(s.at, "");
    CHECK_FALSE(answered(s.at));
  }
  SECTION("a proxy carries many clients: only the total bounds it") {
    limits.uncapped_peers = {"127.0.0.1"};
    Served s(limits, 2);
    Client a(s.at, ""), b(s.at, ""), c(s.at, "");
    CHECK(answered(s.at));
    for (int i = 0; i < 200 && s.server->connections() > 3; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    REQUIRE(s.server->connections() == 3);
    std::vector<std::unique_ptr<Client>> more;
    for (int i = 0; i < 5; ++i) more.push_back(std::make_unique<Client>(s.at, ""));
    CHECK_FALSE(answered(s.at));  // the total, eight, holds
  }
}

TEST_CASE("mcpd::HttpServer: a request Beast cannot parse is answered 400 and closed", "[mcpd][http]") {
  Served s({}, 2);
  const std::string start = "POST /x HTTP/1.1\r\nHost: localhost\r\n";
  for (const std::string& bad : {start + "Content-Length: 2\r\nContent-Length: 3\r\n\r\nab",
                                 start + "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
                                 start + "Transfer-Encoding: chunked\r\n\r\nzz\r\nab\r\n0\r\n\r\n",
                                 std::string("POST /x HTTP/9.1\r\nHost: localhost\r\n\r\n"),
                                 start + "Bad Field: x\r\nContent-Length: 2\r\n\r\nab"}) {
    INFO(bad);
    Client c(s.at, "");
    const std::string got = exchange(c, {bad}, std::chrono::milliseconds(0));
    CHECK(got.rfind("HTTP/1.1 400", 0) == 0);
    CHECK(got.find("Connection: close") != std::string::npos);
  }
}

TEST_CASE("mcpd::HttpServer: a connection's first byte is due within the handshake timeout", "[mcpd][http]") {
  HttpLimits limits = timed_limits();
  limits.handshake_timeout = std::chrono::milliseconds(1000);
  limits.request_timeout = std::chrono::milliseconds(4000);
  Served s(limits, 2);
  {
    // Past the handshake timeout, well within the request timeout: closed.
    Client late(s.at, "");
    CHECK(exchange(late, {"", "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab"},
                   std::chrono::milliseconds(2500))
              .empty());
  }
  Client prompt(s.at, "");
  CHECK(exchange(prompt, {"", "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\n\r\nab"},
                 std::chrono::milliseconds(100))
            .find("200 OK") != std::string::npos);
}

TEST_CASE("mcpd::locate_tls refuses a key file any user may read", "[mcpd][http]") {
  TempDir dir;
  auto made = locate_tls("", "", dir.path());  // a generated pair, the key 0600
  REQUIRE(made);
  CHECK(locate_tls(made->cert, made->key, dir.path()));
  REQUIRE(::chmod(made->key.c_str(), 0640) == 0);
  CHECK(locate_tls(made->cert, made->key, dir.path()));  // group-readable (root:ssl-cert) is fine
  REQUIRE(::chmod(made->key.c_str(), 0601) == 0);
  CHECK(locate_tls(made->cert, made->key, dir.path()));  // o+x reads nothing
  REQUIRE(::chmod(made->key.c_str(), 0602) == 0);
  CHECK_FALSE(locate_tls(made->cert, made->key, dir.path()));  // o+w: anyone may replace it
  REQUIRE(::chmod(made->key.c_str(), 0644) == 0);
  auto refused = locate_tls(made->cert, made->key, dir.path());
  REQUIRE_FALSE(refused);
  CHECK(refused.error().what.find("any user") != std::string::npos);
}
