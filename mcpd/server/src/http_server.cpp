#include "http_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>

#include <boost/asio/strand.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/buffer_body.hpp>
#include <boost/beast/http/chunk_encode.hpp>
#include <boost/beast/http/empty_body.hpp>

#include "text.h"

namespace sluice::mcpd {
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint64_t kMaxDrain = 8 << 20;
// What the read buffer holds beyond a header: Beast reads 64 KiB at a
// time, and a chunk-size line or the trailers of a chunked body wait there
// whole until their end arrives.
constexpr std::size_t kReadSlack = 128 << 10;
// What the wait for a request's first bytes reads at most.
constexpr std::size_t kFirstRead = 4096;

// Transfer-Encoding other than exactly "chunked" (Beast 1.81 treats one
// that does not end in chunked as no body at all, and parses the body as
// the next request: a smuggling gap behind a proxy that reads it
// otherwise), or any on HTTP/1.0: refused (RFC 9112 6.3), and closed.
// A request Beast could not parse (answered 400, then closed), as against
// a connection that ended or timed out (closed without a word).
bool malformed(const boost::system::error_code& ec) {
  return ec && &ec.category() == &http::make_error_code(http::error::bad_version).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message &&
         ec != http::error::need_more && ec != http::error::need_buffer;
}

bool framing_acceptable(const RequestHeader& head) {
  const auto lines = head.count(http::field::transfer_encoding);
  if (lines == 0) return true;
  if (lines > 1 || head.version() < 11) return false;
  return beast::iequals(head.find(http::field::transfer_encoding)->value(), "chunked");
}

// An address as text, an IPv4-mapped IPv6 one as its IPv4 address (as
// trusted_proxies and the audit log write them).
std::string normalised_address(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
  }
  return address.to_string();
}

}  // namespace

// Counts a connection for as long as it lives.

class HttpServer::Ticket {
 public:
  Ticket(std::shared_ptr<std::atomic<std::size_t>> total, std::shared_ptr<PerClient> per_client, std::string client)
      : total_(std::move(total)), per_client_(std::move(per_client)), client_(std::move(client)) {}
  ~Ticket() {
    --*total_;
    if (!per_client_) return;
    std::lock_guard lock(per_client_->mu);
    auto it = per_client_->open.find(client_);
    if (it != per_client_->open.end() && --it->second == 0) per_client_->open.erase(it);
  }
  Ticket(const Ticket&) = delete;
  Ticket& operator=(const Ticket&) = delete;

 private:
  std::shared_ptr<std::atomic<std::size_t>> total_;
  std::shared_ptr<PerClient> per_client_;
  std::string client_;
};

std::string forwarded_client(const std::string& peer, std::string_view forwarded_for,
                             const std::vector<std::string>& trusted_proxies) {
  if (forwarded_for.empty() ||
      std::find(trusted_proxies.begin(), trusted_proxies.end(), peer) == trusted_proxies.end()) {
    return peer;
  }
  // Entries before the last were written by whoever sent the request to
  // the proxy, and prove nothing.
  const auto comma = forwarded_for.rfind(',');
  std::string_view last = comma == std::string_view::npos ? forwarded_for : forwarded_for.substr(comma + 1);
  while (!last.empty() && (last.front() == ' ' || last.front() == '\t')) last.remove_prefix(1);
  while (!last.empty() && (last.back() == ' ' || last.back() == '\t')) last.remove_suffix(1);
  boost::system::error_code ec;
  auto address = asio::ip::make_address(std::string(last.substr(0, 64)), ec);
  if (ec || last.size() > 64) return peer;
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    address = asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6());
  }
  return address.to_string();
}

std::string client_block(const asio::ip::address& address) {
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    return asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()).to_string();
  }
  if (address.is_v6()) {
    auto bytes = address.to_v6().to_bytes();
    std::fill(bytes.begin() + 8, bytes.end(), 0);
    return asio::ip::address_v6(bytes).to_string() + "/64";
  }
  return address.to_string();
}

HttpResponse make_response(unsigned status, std::string body, std::string content_type,
                           unsigned version) {
  HttpResponse res{static_cast<http::status>(status), version};
  res.set(http::field::server, "sluice-mcpd");
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  if (!content_type.empty()) res.set(http::field::content_type, content_type);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

HttpResponse json_response(unsigned status, const nlohmann::json& body, unsigned version) {
  return make_response(status, to_text(body) + "\n", "application/json", version);
}

HttpResponse problem(unsigned status, const std::string& message, unsigned version) {
  return json_response(status, nlohmann::json{{"error", message}}, version);
}

std::string request_path(const RequestHeader& req) {
  std::string t(req.target());
  if (auto q = t.find('?'); q != std::string::npos) t.resize(q);
  return t;
}

std::string query_value(const HttpRequest& req, std::string_view key) {
  const std::string_view t = req.target();
  const auto q = t.find('?');
  if (q == std::string_view::npos) return {};
  std::string_view rest = t.substr(q + 1);
  while (true) {
    const auto amp = rest.find('&');
    const std::string_view pair = rest.substr(0, amp);
    const auto eq = pair.find('=');
    if (pair.substr(0, eq) == key) return eq == std::string_view::npos ? "" : std::string(pair.substr(eq + 1));
    if (amp == std::string_view::npos) return {};
    rest.remove_prefix(amp + 1);
  }
}

std::string header_value(const RequestHeader& req, std::string_view name) {
  auto it = req.find(name);
  return it == req.end() ? std::string() : std::string(it->value());
}

std::string last_header_value(const RequestHeader& req, std::string_view name) {
  std::string_view last;
  for (auto [it, end] = req.equal_range(name); it != end; ++it) last = it->value();
  return std::string(last);
}

Admission HttpServer::checked_header(const RequestHeader& head, const std::string& client) {
  try {
    return header_check_(head, client);
  } catch (const std::exception&) {
    // A bug, not the client's fault, as for the handler: a 500, closed.
    return make_response(500, "internal error\n", "text/plain");
  }
}

HttpServer::HttpServer(asio::io_context& io, asio::ssl::context& tls, HttpLimits limits,
                       HeaderCheck header_check, HttpHandler handler)
    : io_(io), tls_(tls), limits_(limits), header_check_(std::move(header_check)), handler_(std::move(handler)) {}

Result<tcp::endpoint> HttpServer::listen(const std::string& address, std::uint16_t port) {
  boost::system::error_code ec;
  const auto addr = asio::ip::make_address(address, ec);
  if (ec) return fail("listen: bad address " + address);
  auto acc = std::make_unique<tcp::acceptor>(io_);
  const tcp::endpoint ep(addr, port);
  acc->open(ep.protocol(), ec);
  if (!ec) acc->set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc->bind(ep, ec);
  if (!ec) acc->listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("listen on " + address + ":" + std::to_string(port) + ": " + ec.message());
  const tcp::endpoint bound = acc->local_endpoint(ec);
  if (ec) return fail("listen on " + address + ":" + std::to_string(port) + ": " + ec.message());
  acceptor_ = std::move(acc);
  asio::co_spawn(io_, accept_loop(), asio::detached);
  return bound;
}

Result<tcp::endpoint> HttpServer::adopt(int fd) {
  boost::system::error_code ec;
  auto acc = std::make_unique<tcp::acceptor>(io_);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return fail("adopt: not a socket");
  acc->assign(ss.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
  const tcp::endpoint bound = ec ? tcp::endpoint() : acc->local_endpoint(ec);
  if (ec) return fail("adopt listening socket: " + ec.message());
  acceptor_ = std::move(acc);
  asio::co_spawn(io_, accept_loop(), asio::detached);
  return bound;
}

void HttpServer::stop() {
  if (acceptor_) {
    boost::system::error_code ec;
    acceptor_->close(ec);
  }
}

asio::awaitable<void> HttpServer::accept_loop() {
  // Never ends but with the acceptor: an exception (out of memory) in one
  // round is survived, not the end of accepting while the process lives on.
  while (acceptor_ && acceptor_->is_open()) {
    Accepted round = Accepted::failed;
    try {
      round = co_await accept_one();
    } catch (const std::exception&) {
    }
    if (round == Accepted::closed) co_return;
    if (round == Accepted::failed) {
      // Out of descriptors, of memory and the like: back off briefly, keep serving.
      asio::steady_timer t(io_, std::chrono::milliseconds(50));
      co_await t.async_wait(kTuple);
    }
  }
}

// One connection accepted (or refused by the caps).
asio::awaitable<HttpServer::Accepted> HttpServer::accept_one() {
  // Each connection on its own strand: the io_context runs on several
  // threads, and a connection's deadline timer, its reads and writes and
  // the branches of a streamed response must never run at once.
  auto [ec, socket] = co_await acceptor_->async_accept(asio::make_strand(io_), kTuple);
  if (ec) co_return ec == asio::error::operation_aborted ? Accepted::closed : Accepted::failed;
  // Counted here, before the session starts: the caps hold exactly.
  const auto peer = socket.remote_endpoint(ec);
  const std::string client = ec ? "unknown" : client_block(peer.address());
  const bool uncapped = !ec && std::find(limits_.uncapped_peers.begin(), limits_.uncapped_peers.end(),
                                         normalised_address(peer.address())) != limits_.uncapped_peers.end();
  bool admitted = false;
  if (open_->load() < limits_.max_connections && uncapped) {
    admitted = true;
    ++*open_;
  } else if (open_->load() < limits_.max_connections) {
    std::lock_guard lock(per_client_->mu);
    std::size_t& n = per_client_->open[client];
    admitted = n < limits_.max_connections_per_client;
    if (admitted) {
      ++n;
      ++*open_;
    } else if (n == 0) {
      per_client_->open.erase(client);
    }
  }
  if (!admitted) {
    ++*refused_;
    boost::system::error_code ignored;
    socket.close(ignored);
    co_return Accepted::ok;
  }
  // An uncapped peer's connections are counted in the total only.
  auto ticket = std::make_shared<Ticket>(open_, uncapped ? nullptr : per_client_, client);
  socket.set_option(tcp::no_delay(true), ec);
  asio::co_spawn(socket.get_executor(), session(std::move(socket), std::move(ticket)), asio::detached);
  co_return Accepted::ok;
}

namespace {

// Reads and drops up to `left` bytes of a body nobody wants, for two
// seconds at most; false when the connection failed or the time ran out.
asio::awaitable<bool> drain(boost::asio::ssl::stream<beast::tcp_stream>& stream, std::uint64_t left) {
  std::array<char, 16384> sink;
  stream.next_layer().expires_after(std::chrono::seconds(2));
  while (left > 0) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(sink), kTuple);
    if (ec) co_return false;
    left -= std::min<std::uint64_t>(left, n);
  }
  co_return true;
}

// Reads and drops the body of a request answered from its header (a 401,
// say): closing with it unread resets the connection, and the reset can
// reach the client before it has read the answer, which is then lost.
// Parsed, not just read, so it ends where the body ends, chunked or not;
// kMaxDrain bytes and two seconds at most (past either the client sees
// the connection close), and the read buffer's bound holds as for any
// request. (The TLS close alone does not do it: OpenSSL fails a shutdown
// that meets application data, and the socket then closes unread.)
asio::awaitable<void> drop_body(boost::asio::ssl::stream<beast::tcp_stream>& stream, beast::flat_buffer& buffer,
                                http::request_parser<http::string_body>& parser) {
  http::request_parser<http::buffer_body> sink{std::move(parser)};
  sink.body_limit(kMaxDrain);
  std::array<char, 16384> dropped;
  stream.next_layer().expires_after(std::chrono::seconds(2));
  while (!sink.is_done()) {
    sink.get().body().data = dropped.data();
    sink.get().body().size = dropped.size();
    auto [ec, n] = co_await http::async_read(stream, buffer, sink, kTuple);
    if (ec && ec != http::error::need_buffer) co_return;
  }
}

// A piece of a streamed body: one chunk, or (HTTP/1.0) the bytes as they are.
template <class Stream>
asio::awaitable<bool> write_body(Stream& stream, std::string_view text, bool chunked) {
  if (chunked) {
    auto [ec, n] = co_await asio::async_write(stream, http::make_chunk(asio::buffer(text)), kTuple);
    co_return !ec;
  }
  auto [ec, n] = co_await asio::async_write(stream, asio::buffer(text), kTuple);
  co_return !ec;
}

}  // namespace

// Writes `head` with a chunked body of the stream's events until the
// stream is done, the reader is detached (another response took over, or
// the producer asked the client to poll) or the reader's hold passes; an
// idle response gets a keep-alive comment now and then (for proxies that
// cut idle connections). False when the connection is gone. HTTP/1.0 has
// no chunks: the body is the events as they are, ended by closing (the
// caller's `head` is then not keep-alive).
asio::awaitable<bool> HttpServer::write_events(TlsStream& stream, const HttpResponse& head,
                                               StreamReader& events) {
  const bool chunked = head.version() >= 11;
  http::response<http::empty_body> h{head.result(), head.version()};
  for (const auto& field : head.base()) h.set(field.name_string(), field.value());
  h.set(http::field::content_type, "text/event-stream");
  h.set(http::field::cache_control, "no-store");
  h.set("X-Accel-Buffering", "no");  // a reverse proxy (nginx) passes events on as they come
  h.keep_alive(head.keep_alive());
  h.chunked(chunked);
  http::response_serializer<http::empty_body> sr{h};
  stream.next_layer().expires_after(limits_.request_timeout);
  if (auto [ec, n] = co_await http::async_write_header(stream, sr, kTuple); ec) co_return false;
  // A client that goes away mid-stream is noticed at once, not at the next
  // keep-alive write: its socket turns readable (EOF, a reset, or bytes no
  // SSE client sends while a response runs). A wait, not a read, so the
  // TLS layer's state is untouched; the response then ends, and the
  // connection with it. Readiness can be reported with nothing there (seen
  // under load): a peek tells, and the wait is armed again. Every call on
  // the socket stays on this coroutine's chain; the completion only flags
  // and wakes it.
  auto& socket = beast::get_lowest_layer(stream).socket();
  auto readable = std::make_shared<std::atomic<bool>>(false);
  const auto watch = [&socket, readable, wake = events.waker()] {
    socket.async_wait(tcp::socket::wait_read, [readable, wake](boost::system::error_code ec) {
      if (ec == asio::error::operation_aborted) return;
      readable->store(true);
      wake();
    });
  };
  // Whether the client is gone: EOF, an error, or bytes; not a spurious
  // readiness, after which the watch goes on.
  const auto client_gone = [&socket, &watch] {
    char c = 0;
    const ssize_t n = ::recv(socket.native_handle(), &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
      watch();
      return false;
    }
    return true;
  };
  watch();
  struct StopWatching {
    tcp::socket& socket;
    ~StopWatching() {
      boost::system::error_code ignored;
      socket.cancel(ignored);  // no write is in flight on any way out
    }
  } stop_watching{socket};
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  const auto end = events.hold().count() > 0 ? started + events.hold() : Clock::time_point::max();
  auto last_write = started;
  while (true) {
    StreamReader::Chunk chunk = events.take();
    if (!chunk.text.empty()) {
      stream.next_layer().expires_after(limits_.request_timeout);
      if (!co_await write_body(stream, chunk.text, chunked)) co_return false;
      last_write = Clock::now();
    }
    if (chunk.state != StreamReader::State::more) break;
    const auto now = Clock::now();
    if (now >= end) break;  // the client resumes with GET and Last-Event-ID
    const auto ping = last_write + events.keepalive();
    if (now >= ping) {
      static constexpr std::string_view kKeepAlive = ":\n\n";
      stream.next_layer().expires_after(limits_.request_timeout);
      if (!co_await write_body(stream, kKeepAlive, chunked)) co_return false;
      last_write = Clock::now();
      continue;
    }
    // Waiting is ours (a tool may wait on the client), not the client's: no
    // deadline runs meanwhile; each write has one.
    stream.next_layer().expires_never();
    co_await events.wait(std::min(end, ping));
    if (readable->exchange(false) && client_gone()) co_return false;
  }
  if (!chunked) co_return true;
  stream.next_layer().expires_after(limits_.request_timeout);
  auto [ec, n] = co_await asio::async_write(stream, http::make_chunk_last(), kTuple);
  co_return !ec;
}

// `ticket` is held for the connection's lifetime: the caps count it until then.
asio::awaitable<void> HttpServer::session(tcp::socket socket, [[maybe_unused]] std::shared_ptr<Ticket> ticket) {
  boost::system::error_code ec;
  const auto peer = socket.remote_endpoint(ec);
  const std::string client = ec ? "unknown" : normalised_address(peer.address());
  TlsStream stream(beast::tcp_stream(std::move(socket)), tls_);
  stream.next_layer().expires_after(limits_.handshake_timeout);
  if (auto [hs] = co_await stream.async_handshake(asio::ssl::stream_base::server, kTuple); hs) co_return;

  // Bounded: Beast (1.81) bounds a header and a body, but not a chunked
  // body's chunk-size lines or trailers, which it keeps reading into this
  // buffer while it looks for their end. Body bytes leave it as they are
  // parsed, so a header and a read's worth of body is all it ever needs;
  // past that the connection closes.
  beast::flat_buffer buffer(limits_.header_limit + kReadSlack);
  bool first = true;
  while (true) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(limits_.header_limit));
    parser.body_limit(limits_.body_limit);
    // Waiting for a request is bounded by the idle timeout; once its first
    // byte is in, all of it, header and body, must arrive within the
    // request timeout. A connection's first request has the request
    // timeout from the handshake on, its wait included.
    const auto waiting_since = std::chrono::steady_clock::now();
    if (buffer.size() == 0) {
      // A client that connects means to ask: its first byte is due within
      // the handshake timeout, so a connection that never asks holds its
      // slot no longer than a handshake does.
      stream.next_layer().expires_after(first ? std::min(limits_.handshake_timeout, limits_.request_timeout)
                                              : limits_.idle_timeout);
      auto [wec, wn] = co_await stream.async_read_some(buffer.prepare(kFirstRead), kTuple);
      if (wec) co_return;
      buffer.commit(wn);
    }
    const auto deadline = (first ? waiting_since : std::chrono::steady_clock::now()) + limits_.request_timeout;
    stream.next_layer().expires_at(deadline);
    auto [hec, hn] = co_await http::async_read_header(stream, buffer, parser, kTuple);
    std::optional<unsigned> refuse;
    std::optional<HttpResponse> answered;  // decided from the header alone
    std::any admitted;                     // or what the handler goes on with
    bool drop = false;                     // an answered request's body, to read and drop
    if (!hec) {
      const auto& head = parser.get();
      Admission decided;
      if (!framing_acceptable(head)) {
        refuse = 400;
      } else if (decided = checked_header(head, client); auto* answer = std::get_if<HttpResponse>(&decided)) {
        // Answered before the body is read: a client without a key holds
        // no body's worth of memory here; the body is read and dropped
        // after the answer (drop_body). One that waits for 100-continue
        // sends none, and one announced past kMaxDrain is not read: the
        // client sees the close.
        answered = std::move(*answer);
        const auto n = parser.content_length();
        drop = (!n || *n <= kMaxDrain) && !beast::iequals(head[http::field::expect], "100-continue");
      } else {
        admitted = std::move(std::get<std::any>(decided));
        // Trailers: Beast adds a chunked body's trailer fields to the
        // header's; a client must not add a field (X-Forwarded-For, say)
        // after the proxy in front checked the header. Refused.
        const auto fields = std::distance(head.begin(), head.end());
        auto [bec, bn] = co_await http::async_read(stream, buffer, parser, kTuple);
        if (bec == http::error::body_limit) refuse = 413;  // chunked, found while reading
        else if (malformed(bec)) refuse = 400;              // a bad chunk
        else if (bec) co_return;
        else if (std::distance(parser.get().begin(), parser.get().end()) != fields) refuse = 400;
      }
    } else if (hec == http::error::body_limit) {
      refuse = 413;  // Content-Length over the limit, found with the header
    } else if (hec == http::error::header_limit) {
      refuse = 431;
    } else if (malformed(hec)) {
      refuse = 400;  // two Content-Lengths that differ, one beside Transfer-Encoding, a bad line...
    } else {
      co_return;  // closed or timed out: nobody to answer
    }
    if (refuse == 413) {
      // Read and drop the rest of a moderately oversized body first: a
      // client still sending when the connection closes sees a reset, not
      // the 413. Past kMaxDrain it gets the reset.
      // With the limit found at the header's end, Beast has not marked the
      // header done (content_length() asserts that): read the field.
      std::optional<std::uint64_t> announced;
      if (parser.is_header_done()) {
        if (auto n = parser.content_length()) announced = *n;
      } else if (auto f = parser.get().find(http::field::content_length); f != parser.get().end()) {
        std::uint64_t n = 0;
        const auto text = f->value();
        if (auto [end, err] = std::from_chars(text.data(), text.data() + text.size(), n);
            err == std::errc() && end == text.data() + text.size()) {
          announced = n;
        }
      }
      if (announced && *announced <= kMaxDrain) {
        const std::uint64_t left = *announced > buffer.size() ? *announced - buffer.size() : 0;
        buffer.consume(buffer.size());
        if (!co_await drain(stream, left)) co_return;
      }
    }
    first = false;
    if (answered) {
      answered->keep_alive(false);
      stream.next_layer().expires_after(limits_.request_timeout);
      auto [aec, an] = co_await http::async_write(stream, *answered, kTuple);
      if (aec) co_return;
      if (drop) co_await drop_body(stream, buffer, parser);
      break;
    }
    if (refuse) {
      HttpResponse res = make_response(*refuse,
                                       *refuse == 413   ? "request body too large\n"
                                       : *refuse == 431 ? "request headers too large\n"
                                                        : "bad request framing\n",
                                       "text/plain");
      res.keep_alive(false);
      stream.next_layer().expires_after(limits_.request_timeout);
      co_await http::async_write(stream, res, kTuple);
      break;
    }
    HttpRequest req = parser.release();
    const bool keep = req.keep_alive();
    HttpReply reply;
    try {
      reply = co_await handler_(std::move(req), std::move(admitted));
    } catch (const std::exception&) {
      // A bug, not the client's fault; the message stays in this process.
      reply = HttpReply{make_response(500, "internal error\n", "text/plain"), nullptr, nullptr};
    }
    HttpResponse& res = reply.response;
    res.keep_alive(keep && res.keep_alive());
    if (reply.stream) {
      if (res.version() < 11) res.keep_alive(false);  // the body ends with the connection
      if (!co_await write_events(stream, res, *reply.stream)) co_return;
      if (!res.keep_alive()) break;
      continue;
    }
    stream.next_layer().expires_after(limits_.request_timeout);
    auto [wec, wn] = co_await http::async_write(stream, res, kTuple);
    if (wec || !res.keep_alive()) break;
  }
  stream.next_layer().expires_after(std::chrono::seconds(2));
  co_await stream.async_shutdown(kTuple);
}

}  // namespace sluice::mcpd
