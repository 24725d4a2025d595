// Which client a request counts as: the /64 rule and trusted proxies.
#include <boost/asio/ip/address.hpp>
#include <catch2/catch.hpp>

#include "http_server.h"

using sluice::mcpd::client_block;
using sluice::mcpd::forwarded_client;

TEST_CASE("mcpd::client_block: IPv4 as is, IPv6 by /64, v4-mapped as IPv4", "[mcpd][client]") {
  const auto a = [](const char* s) { return boost::asio::ip::make_address(s); };
  CHECK(client_block(a("203.0.113.7")) == "203.0.113.7");
  CHECK(client_block(a("2001:db8:1:2:aaaa:bbbb:cccc:dddd")) == "2001:db8:1:2::/64");
  CHECK(client_block(a("2001:db8:1:2::1")) == client_block(a("2001:db8:1:2:ffff::9")));
  CHECK(client_block(a("::ffff:198.51.100.4")) == "198.51.100.4");
}

TEST_CASE("mcpd::forwarded_client believes X-Forwarded-For only from a trusted proxy", "[mcpd][client]") {
  const std::vector<std::string> trusted = {"127.0.0.1", "::1"};
  // Not a proxy of ours: the header is whatever the client wanted to say.
  CHECK(forwarded_client("198.51.100.9", "203.0.113.7", trusted) == "198.51.100.9");
  CHECK(forwarded_client("198.51.100.9", "203.0.113.7", {}) == "198.51.100.9");
  // From the proxy: the rightmost entry, the address the proxy saw.
  CHECK(forwarded_client("127.0.0.1", "203.0.113.7", trusted) == "203.0.113.7");
  CHECK(forwarded_client("127.0.0.1", "10.9.9.9, 203.0.113.7", trusted) == "203.0.113.7");
  CHECK(forwarded_client("::1", " 1.2.3.4 ,\t2001:db8::5 ", trusted) == "2001:db8::5");
  CHECK(forwarded_client("127.0.0.1", "::ffff:203.0.113.7", trusted) == "203.0.113.7");
  // No header, or nothing usable in it: the proxy answers for the request.
  CHECK(forwarded_client("127.0.0.1", "", trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", "203.0.113.7, unknown", trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", "203.0.113.7:8080", trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", std::string(5000, '1'), trusted) == "127.0.0.1");
  CHECK(forwarded_client("127.0.0.1", "1.2.3.4,", trusted) == "127.0.0.1");
}

TEST_CASE("mcpd::last_header_value reads a repeated header's last line", "[mcpd][client]") {
  // A proxy that adds its own X-Forwarded-For line after the client's: the
  // client's line must not pass for the address the proxy saw.
  sluice::mcpd::HttpRequest req;
  CHECK(sluice::mcpd::last_header_value(req, "X-Forwarded-For").empty());
  req.insert("X-Forwarded-For", "192.0.2.66");
  req.insert("X-Forwarded-For", "198.51.100.9");
  CHECK(sluice::mcpd::header_value(req, "X-Forwarded-For") == "192.0.2.66");
  CHECK(sluice::mcpd::last_header_value(req, "x-forwarded-for") == "198.51.100.9");
  CHECK(forwarded_client("127.0.0.1", sluice::mcpd::last_header_value(req, "X-Forwarded-For"), {"127.0.0.1"}) ==
        "198.51.100.9");
}
