#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/policy/entry.h"

using namespace sluice::policy;

namespace {

constexpr DenyOptions kStrict{};
constexpr DenyOptions kLoopbackAllowed{.allow_loopback = true};

enum class Kind { host, wildcard, v4, v6 };

Kind kind_of(const Entry& e) {
  if (const HostPattern* h = e.host()) return h->wildcard ? Kind::wildcard : Kind::host;
  return e.cidr()->addr.family == Family::v4 ? Kind::v4 : Kind::v6;
}

std::string to_string(Kind k) {
  switch (k) {
    case Kind::host: return "host";
    case Kind::wildcard: return "wildcard";
    case Kind::v4: return "v4";
    case Kind::v6: return "v6";
  }
  return "?";
}

Entry entry_of(std::string_view text, const DenyOptions& options = kStrict) {
  auto r = parse_entry(text, options);
  INFO("parse_entry(\"" << text << "\"): " << (r ? "" : r.error().message));
  REQUIRE(r);
  return *r;
}

Error error_of(std::string_view text, const DenyOptions& options = kStrict) {
  auto r = parse_entry(text, options);
  INFO("parse_entry(\"" << text << "\") -> " << (r ? r->to_string() : ""));
  REQUIRE_FALSE(r);
  return r.error();
}

}  // namespace

TEST_CASE("policy::parse_entry accepts every documented form and prints it canonically",
          "[policy][entry]") {
  struct Row {
    const char* text;
    const char* canonical;
    Kind kind;
    std::optional<std::uint16_t> port;
  };
  const std::vector<Row> rows = {
      // host, host:port
      {"api.example.com", "api.example.com", Kind::host, std::nullopt},
      {"API.Example.COM", "api.example.com", Kind::host, std::nullopt},
      {"api.example.com.", "api.example.com", Kind::host, std::nullopt},
      {"api.example.com:443", "api.example.com:443", Kind::host, 443},
      {"Api.Example.com.:8443", "api.example.com:8443", Kind::host, 8443},
      {"intranet:80", "intranet:80", Kind::host, 80},
      // *.domain, *.domain:port
      {"*.example.com", "*.example.com", Kind::wildcard, std::nullopt},
      {"*.Example.com:443", "*.example.com:443", Kind::wildcard, 443},
      // v4, v4:port, v4/len, v4/len:port
      {"192.0.2.1", "192.0.2.1", Kind::v4, std::nullopt},
      {"192.0.2.1:443", "192.0.2.1:443", Kind::v4, 443},
      {"10.20.0.0/16", "10.20.0.0/16", Kind::v4, std::nullopt},
      {"10.20.0.0/16:443", "10.20.0.0/16:443", Kind::v4, 443},
      {"192.0.2.1/32", "192.0.2.1", Kind::v4, std::nullopt},
      {"192.0.2.1/32:1", "192.0.2.1:1", Kind::v4, 1},
      {"0.0.0.0/0:65535", "0.0.0.0/0:65535", Kind::v4, 65535},
      // v6, [v6], [v6]:port
      {"2001:db8::1", "2001:db8::1", Kind::v6, std::nullopt},
      {"2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1", Kind::v6, std::nullopt},
      {"[2001:db8::1]", "2001:db8::1", Kind::v6, std::nullopt},
      {"[2001:db8::1]:443", "[2001:db8::1]:443", Kind::v6, 443},
      // v6/len, [v6/len], [v6/len]:port, v6/len:port
      {"2001:db8::/32", "2001:db8::/32", Kind::v6, std::nullopt},
      {"[2001:db8::/32]", "2001:db8::/32", Kind::v6, std::nullopt},
      {"[2001:db8::/32]:443", "[2001:db8::/32]:443", Kind::v6, 443},
      {"2001:db8::/32:443", "[2001:db8::/32]:443", Kind::v6, 443},
      {"2001:db8::1/128:8080", "[2001:db8::1]:8080", Kind::v6, 8080},
      {"::/0", "::/0", Kind::v6, std::nullopt},
      // IPv4-mapped spellings become IPv4 entries
      {"::ffff:192.0.2.1", "192.0.2.1", Kind::v4, std::nullopt},
      {"[::ffff:192.0.2.1]:443", "192.0.2.1:443", Kind::v4, 443},
      {"::ffff:10.0.0.0/104", "10.0.0.0/8", Kind::v4, std::nullopt},
      {"[::ffff:10.0.0.0/104]:443", "10.0.0.0/8:443", Kind::v4, 443},
      {"::ffff:10.0.0.0/104:443", "10.0.0.0/8:443", Kind::v4, 443},
  };
  for (const Row& row : rows) {
    DYNAMIC_SECTION("\"" << row.text << "\" reads as " << row.canonical) {
      const Entry e = entry_of(row.text);
      CHECK(to_string(kind_of(e)) == to_string(row.kind));
      CHECK(e.port == row.port);
      CHECK(e.to_string() == row.canonical);
      // The canonical text is a fixed point and denotes the same entry.
      const Entry again = entry_of(e.to_string());
      CHECK(again == e);
      CHECK(again.to_string() == row.canonical);
    }
  }
}

TEST_CASE("policy::parse_entry fills the target and port", "[policy][entry]") {
  SECTION("a host entry carries the canonical pattern") {
    const Entry e = entry_of("*.Example.com:443");
    REQUIRE(e.host());
    CHECK_FALSE(e.cidr());
    CHECK(e.host()->wildcard);
    CHECK(e.host()->name == "example.com");
    CHECK(e.port == 443);
  }
  SECTION("a block entry carries the block") {
    const Entry e = entry_of("10.20.0.0/16:443");
    REQUIRE(e.cidr());
    CHECK_FALSE(e.host());
    CHECK(e.cidr()->prefix == 16);
    CHECK(e.cidr()->addr == IpAddr::v4(10, 20, 0, 0));
  }
  SECTION("without a port every port is allowed") {
    const Entry e = entry_of("api.example.com");
    CHECK_FALSE(e.port);
    CHECK(e.port_allows(1));
    CHECK(e.port_allows(65535));
  }
  SECTION("with a port only that port is allowed") {
    const Entry e = entry_of("api.example.com:443");
    CHECK(e.port_allows(443));
    CHECK_FALSE(e.port_allows(80));
  }
  SECTION("a bare IPv6 address with a trailing group is an address, not a port") {
    const Entry e = entry_of("2001:db8::1:443");
    CHECK_FALSE(e.port);
    REQUIRE(e.cidr());
    CHECK(e.to_string() == "2001:db8::1:443");
  }
  SECTION("entries that differ only in case or spelling are equal") {
    CHECK(entry_of("API.example.com:443") == entry_of("api.example.com.:443"));
    CHECK(entry_of("::ffff:10.0.0.1") == entry_of("10.0.0.1"));
    CHECK(entry_of("[2001:DB8::1]") == entry_of("2001:db8:0:0:0:0:0:1"));
  }
  SECTION("entries with and without a port are different") {
    CHECK_FALSE(entry_of("api.example.com:443") == entry_of("api.example.com"));
  }
}

TEST_CASE("policy::parse_port accepts 1 to 65535 in plain decimal", "[policy][entry]") {
  SECTION("the bounds and a common port") {
    CHECK(parse_port("1") == 1);
    CHECK(parse_port("443") == 443);
    CHECK(parse_port("65535") == 65535);
  }
  const std::vector<std::string> bad = {"0",     "00",    "65536", "99999", "4294967297",
                                        "080",   "0443",  "+80",   "-80",   "-0",
                                        "",      " 80",   "80 ",   "8o",    "0x50",
                                        "1e3",   "80.0",  "http",  "\xd9\xa8\xd9\xa0"};
  for (const std::string& text : bad) {
    DYNAMIC_SECTION("\"" << text << "\" is not a port") {
      auto r = parse_port(text);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == ErrorCode::bad_port);
      CHECK_THAT(r.error().message, Catch::Contains("1 to 65535"));
    }
  }
}

TEST_CASE("policy::parse_entry rejects bad ports after every kind of target",
          "[policy][entry]") {
  for (const char* text :
       {"api.example.com:0", "api.example.com:65536", "api.example.com:080",
        "api.example.com:", "api.example.com:+443", "*.example.com:https", "192.0.2.1:0",
        "192.0.2.1:", "10.0.0.0/8:-1", "10.0.0.0/8:", "[2001:db8::1]:", "[2001:db8::1]:99999",
        "[2001:db8::/32]:0", "2001:db8::/32:0", "2001:db8::/32:", "[2001:db8::1]443",
        "[2001:db8::1]x:443"}) {
    DYNAMIC_SECTION("\"" << text << "\" has a bad port") {
      CHECK(to_string(error_of(text).code) == to_string(ErrorCode::bad_port));
    }
  }
}

TEST_CASE("policy::parse_entry bounds the entry length", "[policy][entry]") {
  SECTION("a maximal host name with a port fits") {
    std::string name;
    for (int i = 0; i < 3; ++i) name += std::string(63, static_cast<char>('a' + i)) + ".";
    name += std::string(61, 'd');
    REQUIRE(name.size() == 253);
    const Entry e = entry_of(name + ":65535");
    CHECK(e.host()->name == name);
  }
  SECTION("kMaxEntryLength characters are parsed, not refused for size") {
    const Error e = error_of(std::string(kMaxEntryLength, 'a'));
    CHECK(e.code == ErrorCode::bad_hostname);
  }
  SECTION("one more character is too large") {
    const Error e = error_of(std::string(kMaxEntryLength + 1, 'a'));
    CHECK(e.code == ErrorCode::too_large);
    CHECK_THAT(e.message, Catch::Contains(std::to_string(kMaxEntryLength)));
  }
  SECTION("a huge entry is refused with a bounded message") {
    const Error e = error_of("[" + std::string(100000, ':') + "]");
    CHECK(e.code == ErrorCode::too_large);
    CHECK(e.message.size() < 200);
  }
  SECTION("an empty entry is empty") { CHECK(error_of("").code == ErrorCode::empty); }
}

TEST_CASE("policy::parse_entry reports the target's own error", "[policy][entry]") {
  struct Row {
    const char* text;
    ErrorCode code;
  };
  const std::vector<Row> rows = {
      {"exa_mple.com", ErrorCode::bad_hostname},
      {"*.com:443", ErrorCode::bad_wildcard},
      {"a.*.example.com", ErrorCode::bad_wildcard},
      {"*", ErrorCode::bad_wildcard},
      {"b\xc3\xbc" "cher.de", ErrorCode::non_ascii},
      {"xn--.example.com", ErrorCode::bad_punycode},
      {"1.2.3", ErrorCode::bad_address},
      {"01.2.3.4", ErrorCode::bad_address},
      {"1.2.3.256:80", ErrorCode::bad_address},
      {"2001:db8:::1", ErrorCode::bad_address},
      {"fe80::1%eth0", ErrorCode::bad_address},
      {"[192.0.2.1]:443", ErrorCode::bad_address},
      {"[2001:db8::1", ErrorCode::bad_address},
      {"[]", ErrorCode::bad_address},
      {"example.com/24", ErrorCode::bad_prefix},
      {"192.0.2.0/33", ErrorCode::bad_prefix},
      {"192.0.2.0/024:443", ErrorCode::bad_prefix},
      {"2001:db8::/129", ErrorCode::bad_prefix},
      {"192.0.2.1/24", ErrorCode::host_bits_set},
      {"[2001:db8::1/32]:443", ErrorCode::host_bits_set},
      {":443", ErrorCode::empty},
  };
  for (const Row& row : rows) {
    DYNAMIC_SECTION("\"" << row.text << "\" is " << to_string(row.code)) {
      CHECK(to_string(error_of(row.text).code) == to_string(row.code));
    }
  }
  SECTION("a host-bits error keeps its suggestion") {
    CHECK_THAT(error_of("192.0.2.1/24:443").message, Catch::Contains("did you mean 192.0.2.0/24?"));
  }
}

TEST_CASE("policy::parse_entry refuses entries inside always-denied ranges", "[policy][entry]") {
  for (const char* text :
       {"169.254.169.254", "169.254.169.254:80", "169.254.0.0/16", "169.254.0.0/16:443",
        "169.254.1.0/24", "::ffff:169.254.169.254", "[::ffff:169.254.169.254]:80", "fe80::1",
        "[fe80::1]:443", "fe80::/10", "fe80::/64:443", "[fe80::/16]", "fd00:ec2::254",
        "[fd00:ec2::254]:80", "100.100.100.200", "100.100.100.200:80", "127.0.0.1",
        "127.0.0.1:8080", "127.0.0.0/8", "127.1.0.0/16:80", "::1", "[::1]:443", "0.0.0.0",
        "0.0.0.0:80", "0.0.0.0/8", "::", "[::]:80", "::ffff:127.0.0.1"}) {
    DYNAMIC_SECTION("\"" << text << "\" is denied") {
      const Error e = error_of(text);
      CHECK(to_string(e.code) == to_string(ErrorCode::denied_range));
      CHECK_THAT(e.message, Catch::Contains("always-denied"));
      CHECK_THAT(e.message, Catch::Contains(text));
    }
  }
  SECTION("the message names why the range is denied") {
    CHECK_THAT(error_of("169.254.169.254").message, Catch::Contains("link-local"));
    CHECK_THAT(error_of("100.100.100.200:80").message, Catch::Contains("cloud metadata"));
    CHECK_THAT(error_of("[::1]:443").message, Catch::Contains("loopback"));
  }
}

TEST_CASE("policy::parse_entry admits loopback only when DenyOptions allow it",
          "[policy][entry]") {
  SECTION("loopback and the local-host ranges become ordinary entries") {
    CHECK(entry_of("127.0.0.1:8080", kLoopbackAllowed).to_string() == "127.0.0.1:8080");
    CHECK(entry_of("[::1]:443", kLoopbackAllowed).to_string() == "[::1]:443");
    CHECK(entry_of("127.0.0.0/8", kLoopbackAllowed).to_string() == "127.0.0.0/8");
    CHECK(entry_of("0.0.0.0", kLoopbackAllowed).to_string() == "0.0.0.0");
    CHECK(entry_of("::", kLoopbackAllowed).to_string() == "::");
  }
  SECTION("the other always-denied ranges stay denied") {
    for (const char* text : {"169.254.169.254", "fe80::1", "fd00:ec2::254", "100.100.100.200"}) {
      INFO(text);
      CHECK(error_of(text, kLoopbackAllowed).code == ErrorCode::denied_range);
    }
  }
}

TEST_CASE("policy::parse_entry accepts blocks that merely contain a denied range",
          "[policy][entry]") {
  for (const char* text : {"0.0.0.0/0", "169.254.0.0/15", "169.0.0.0/8:443", "::/0",
                           "fe80::/9", "[fc00::/7]:443", "100.100.100.0/24", "126.0.0.0/7",
                           "fd00:ec2::/32:443"}) {
    DYNAMIC_SECTION("\"" << text << "\" is allowed") {
      auto r = parse_entry(text, kStrict);
      INFO((r ? "" : r.error().message));
      CHECK(r);
    }
  }
}
