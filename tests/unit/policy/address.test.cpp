#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/policy/address.h"

using namespace sluice::policy;

namespace {

IpAddr ip_of(std::string_view text) {
  auto r = parse_ip(text);
  INFO("parse_ip(" << text << ")");
  REQUIRE(r);
  return *r;
}

Cidr cidr_of(std::string_view text) {
  auto r = parse_cidr(text);
  INFO("parse_cidr(" << text << ")");
  REQUIRE(r);
  return *r;
}

IpAddr v6_of(std::initializer_list<std::uint16_t> words) {
  IpAddr a;
  a.family = Family::v6;
  std::size_t i = 0;
  for (std::uint16_t w : words) {
    a.bytes[i++] = static_cast<std::uint8_t>(w >> 8);
    a.bytes[i++] = static_cast<std::uint8_t>(w & 0xff);
  }
  return a;
}

constexpr DenyOptions kStrict{};
constexpr DenyOptions kLoopbackAllowed{.allow_loopback = true};

}  // namespace

TEST_CASE("policy::parse_ip accepts a plain dotted quad", "[policy][address]") {
  SECTION("each octet lands in its byte and the rest stays zero") {
    const IpAddr a = ip_of("192.0.2.17");
    CHECK(a.family == Family::v4);
    CHECK(a == IpAddr::v4(192, 0, 2, 17));
    CHECK(a.bits() == 32);
    for (std::size_t i = 4; i < 16; ++i) CHECK(a.bytes[i] == 0);
  }
  SECTION("the extremes 0.0.0.0 and 255.255.255.255 are addresses") {
    CHECK(ip_of("0.0.0.0") == IpAddr::v4(0, 0, 0, 0));
    CHECK(ip_of("255.255.255.255") == IpAddr::v4(255, 255, 255, 255));
  }
}

TEST_CASE("policy::parse_ip rejects anything but a strict dotted quad", "[policy][address]") {
  const std::vector<std::string> bad = {
      "01.2.3.4",          // leading zero (would be octal to inet_aton)
      "1.2.3.04",          // leading zero in the last octet
      "1.2.3.00",          // a zero written twice
      "1.2.3",             // three parts
      "1.2",               // two parts
      "16909060",          // one part
      "1.2.3.4.5",         // five parts
      "1.2.3.256",         // octet > 255
      "256.1.1.1",         // octet > 255
      "1.2.3.1000",        // four digits
      "0x01.0x02.0x03.0x04",  // hex
      "0x7f.1",            // hex, short form
      "1.2.3.4 ",          // trailing space
      " 1.2.3.4",          // leading space
      "1.2.3.",            // trailing dot
      ".1.2.3",            // leading dot
      "1..2.3",            // empty part
      "+1.2.3.4",          // sign
      "1.2.3.-4",          // sign
      "a.b.c.d",           // letters
      std::string("10.0.0.1\0junk", 13),  // NUL: inet_pton would stop at it
  };
  for (const std::string& text : bad) {
    DYNAMIC_SECTION("\"" << text << "\" is not an address") {
      auto r = parse_ip(text);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == ErrorCode::bad_address);
    }
  }
  SECTION("an empty string is reported as empty") {
    auto r = parse_ip("");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::empty);
  }
  SECTION("an overlong string is refused without being parsed") {
    auto r = parse_ip(std::string(1000, '1'));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::bad_address);
    CHECK(r.error().message.size() < 200);
  }
}

TEST_CASE("policy::parse_ip accepts IPv6 in full and compressed forms", "[policy][address]") {
  SECTION("the full form with leading zeros") {
    const IpAddr a = ip_of("2001:0db8:0000:0000:0000:0000:0000:0001");
    CHECK(a.family == Family::v6);
    CHECK(a.bits() == 128);
    CHECK(a == v6_of({0x2001, 0x0db8, 0, 0, 0, 0, 0, 1}));
  }
  SECTION("compression in the middle, at the start and at the end") {
    CHECK(ip_of("2001:db8::1") == v6_of({0x2001, 0x0db8, 0, 0, 0, 0, 0, 1}));
    CHECK(ip_of("::1") == v6_of({0, 0, 0, 0, 0, 0, 0, 1}));
    CHECK(ip_of("2001:db8::") == v6_of({0x2001, 0x0db8, 0, 0, 0, 0, 0, 0}));
    CHECK(ip_of("::") == v6_of({0, 0, 0, 0, 0, 0, 0, 0}));
  }
  SECTION("upper-case hex digits are the same address") {
    CHECK(ip_of("2001:DB8::ABCD") == ip_of("2001:db8::abcd"));
  }
  SECTION("an embedded dotted quad outside ::ffff:0:0/96 stays IPv6") {
    const IpAddr a = ip_of("64:ff9b::192.0.2.1");
    CHECK(a.family == Family::v6);
    CHECK(a == v6_of({0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x0201}));
  }
}

TEST_CASE("policy::parse_ip stores an IPv4-mapped IPv6 address as IPv4", "[policy][address]") {
  SECTION("in dotted form") {
    const IpAddr a = ip_of("::ffff:10.0.0.1");
    CHECK(a.family == Family::v4);
    CHECK(a == IpAddr::v4(10, 0, 0, 1));
  }
  SECTION("in hex form and fully written out") {
    CHECK(ip_of("::ffff:a00:1") == IpAddr::v4(10, 0, 0, 1));
    CHECK(ip_of("0:0:0:0:0:FFFF:0A00:0001") == IpAddr::v4(10, 0, 0, 1));
  }
  SECTION("so that it prints as the IPv4 address") {
    CHECK(ip_of("::ffff:192.0.2.1").to_string() == "192.0.2.1");
  }
  SECTION("but ::ffff:0:a.b.c.d (IPv4-translated) is not mapped and stays IPv6") {
    CHECK(ip_of("::ffff:0:10.0.0.1").family == Family::v6);
  }
}

TEST_CASE("policy::parse_ip rejects malformed IPv6 and zone ids", "[policy][address]") {
  const std::vector<std::string> bad = {
      "fe80::1%eth0",       // zone id
      "fe80::1%25eth0",     // URL-encoded zone id
      "fe80::1%1",          // numeric zone id
      "2001:db8:::1",       // triple colon
      "2001::db8::1",       // two compressions
      "2001:db8::g",        // not hex
      "2001:db8::12345",    // five hex digits
      "1:2:3:4:5:6:7:8:9",  // nine groups
      "1:2:3:4:5:6:7",      // seven groups, no compression
      ":1:2:3:4:5:6:7",     // lone leading colon
      "[2001:db8::1]",      // brackets belong to entries, not addresses
      "::ffff:1.2.3",       // short embedded quad
      "::ffff:01.2.3.4",    // leading zero in the embedded quad
      "1.2.3.4:80",         // a port is not part of an address
      std::string("2001:db8::1\0junk", 16),
  };
  for (const std::string& text : bad) {
    DYNAMIC_SECTION("\"" << text << "\" is not an address") {
      auto r = parse_ip(text);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == ErrorCode::bad_address);
    }
  }
}

TEST_CASE("policy::IpAddr::to_string writes the canonical RFC 5952 form", "[policy][address]") {
  SECTION("IPv4 is a plain dotted quad") {
    CHECK(IpAddr::v4(10, 0, 0, 1).to_string() == "10.0.0.1");
    CHECK(IpAddr::v4(0, 0, 0, 0).to_string() == "0.0.0.0");
  }
  SECTION("leading zeros in a group are dropped and hex is lower case") {
    CHECK(ip_of("2001:0DB8:0000:0000:0000:0000:0000:000A").to_string() == "2001:db8::a");
  }
  SECTION("the longest run of zero groups is compressed") {
    CHECK(ip_of("2001:db8:0:0:1:0:0:0").to_string() == "2001:db8:0:0:1::");
    CHECK(ip_of("0:0:0:1:2:0:0:0").to_string() == "::1:2:0:0:0");
  }
  SECTION("of two equal runs the first is compressed") {
    CHECK(ip_of("2001:db8:0:0:1:0:0:1").to_string() == "2001:db8::1:0:0:1");
  }
  SECTION("a single zero group is not compressed") {
    CHECK(ip_of("2001:db8:0:1:1:1:1:1").to_string() == "2001:db8:0:1:1:1:1:1");
  }
  SECTION("the unspecified, loopback and all-ones addresses") {
    CHECK(ip_of("0:0:0:0:0:0:0:0").to_string() == "::");
    CHECK(ip_of("0:0:0:0:0:0:0:1").to_string() == "::1");
    CHECK(ip_of("1:0:0:0:0:0:0:0").to_string() == "1::");
    CHECK(ip_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff").to_string() ==
          "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
  }
  SECTION("every canonical text parses back to the same address") {
    for (const char* text : {"2001:db8::1", "::102:304", "::1:2", "64:ff9b::c000:201",
                             "fe80::1:2:3:4", "::ffff:0:102:304", "1:2:3:4:5:6:7:8"}) {
      const IpAddr a = ip_of(text);
      INFO(text << " -> " << a.to_string());
      CHECK(ip_of(a.to_string()) == a);
      CHECK(ip_of(a.to_string()).to_string() == a.to_string());
    }
  }
}

TEST_CASE("policy::parse_cidr reads blocks and single addresses", "[policy][address]") {
  SECTION("an IPv4 block") {
    const Cidr c = cidr_of("10.0.0.0/8");
    CHECK(c.addr == IpAddr::v4(10, 0, 0, 0));
    CHECK(c.prefix == 8);
    CHECK_FALSE(c.is_host());
    CHECK(c.to_string() == "10.0.0.0/8");
  }
  SECTION("an IPv6 block, written canonically") {
    const Cidr c = cidr_of("2001:0DB8::/32");
    CHECK(c.addr.family == Family::v6);
    CHECK(c.prefix == 32);
    CHECK(c.to_string() == "2001:db8::/32");
  }
  SECTION("a bare address is a host block, printed without /32 or /128") {
    CHECK(cidr_of("192.0.2.1") == Cidr::host(IpAddr::v4(192, 0, 2, 1)));
    CHECK(cidr_of("192.0.2.1").is_host());
    CHECK(cidr_of("192.0.2.1").to_string() == "192.0.2.1");
    CHECK(cidr_of("192.0.2.1/32") == cidr_of("192.0.2.1"));
    CHECK(cidr_of("2001:db8::1/128") == cidr_of("2001:db8::1"));
    CHECK(cidr_of("2001:db8::1/128").to_string() == "2001:db8::1");
  }
  SECTION("a zero-length prefix covers the whole family") {
    CHECK(cidr_of("0.0.0.0/0").prefix == 0);
    CHECK(cidr_of("::/0").to_string() == "::/0");
  }
}

TEST_CASE("policy::parse_cidr refuses host bits below the prefix", "[policy][address]") {
  SECTION("for IPv4, suggesting the masked block") {
    auto r = parse_cidr("10.1.2.3/8");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::host_bits_set);
    CHECK_THAT(r.error().message, Catch::Contains("did you mean 10.0.0.0/8?"));
  }
  SECTION("for a prefix that is not a multiple of 8") {
    auto r = parse_cidr("192.168.1.128/23");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::host_bits_set);
    CHECK_THAT(r.error().message, Catch::Contains("did you mean 192.168.0.0/23?"));
  }
  SECTION("for IPv6, suggesting the canonical masked block") {
    auto r = parse_cidr("2001:db8::1/32");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::host_bits_set);
    CHECK_THAT(r.error().message, Catch::Contains("did you mean 2001:db8::/32?"));
  }
  SECTION("for a /0 with any bit set") {
    auto r = parse_cidr("0.0.0.1/0");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::host_bits_set);
    CHECK_THAT(r.error().message, Catch::Contains("did you mean 0.0.0.0/0?"));
  }
}

TEST_CASE("policy::parse_cidr rejects malformed prefix lengths as bad_prefix",
          "[policy][address]") {
  const std::vector<std::string> bad = {
      "10.0.0.0/33", "10.0.0.0/08", "10.0.0.0/00", "10.0.0.0/", "10.0.0.0/-1",
      "10.0.0.0/+8", "10.0.0.0/8a", "10.0.0.0/ 8", "10.0.0.0/8/8", "10.0.0.0/4294967304",
      "2001:db8::/129", "2001:db8::/032", "2001:db8::/", "::ffff:10.0.0.0/95",
      "::ffff:10.0.0.0/129",
  };
  for (const std::string& text : bad) {
    DYNAMIC_SECTION("\"" << text << "\" has a bad prefix") {
      auto r = parse_cidr(text);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == ErrorCode::bad_prefix);
    }
  }
  SECTION("the address part is still checked first") {
    auto r = parse_cidr("10.0.0/8");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::bad_address);
  }
}

TEST_CASE("policy::parse_cidr turns an IPv4-mapped block into the IPv4 block",
          "[policy][address]") {
  SECTION("::ffff:10.0.0.0/104 is 10.0.0.0/8") {
    const Cidr c = cidr_of("::ffff:10.0.0.0/104");
    CHECK(c.addr.family == Family::v4);
    CHECK(c == cidr_of("10.0.0.0/8"));
    CHECK(c.to_string() == "10.0.0.0/8");
  }
  SECTION("/96 is the whole IPv4 space and /128 a single IPv4 address") {
    CHECK(cidr_of("::ffff:0.0.0.0/96") == cidr_of("0.0.0.0/0"));
    CHECK(cidr_of("::ffff:192.0.2.1/128") == cidr_of("192.0.2.1"));
  }
  SECTION("host bits are judged against the mapped prefix") {
    auto r = parse_cidr("::ffff:10.0.0.1/104");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::host_bits_set);
    CHECK_THAT(r.error().message, Catch::Contains("did you mean 10.0.0.0/8?"));
  }
}

TEST_CASE("policy::Cidr::contains tests addresses and blocks by prefix", "[policy][address]") {
  const Cidr ten = cidr_of("10.0.0.0/8");
  SECTION("an address inside and on both edges is contained") {
    CHECK(ten.contains(ip_of("10.0.0.0")));
    CHECK(ten.contains(ip_of("10.200.3.4")));
    CHECK(ten.contains(ip_of("10.255.255.255")));
  }
  SECTION("an address just outside is not") {
    CHECK_FALSE(ten.contains(ip_of("9.255.255.255")));
    CHECK_FALSE(ten.contains(ip_of("11.0.0.0")));
  }
  SECTION("a prefix that is not a multiple of 8 is honoured") {
    const Cidr c = cidr_of("192.168.0.0/23");
    CHECK(c.contains(ip_of("192.168.1.255")));
    CHECK_FALSE(c.contains(ip_of("192.168.2.0")));
  }
  SECTION("families never contain each other") {
    CHECK_FALSE(cidr_of("::/0").contains(ip_of("10.0.0.1")));
    CHECK_FALSE(cidr_of("0.0.0.0/0").contains(ip_of("2001:db8::1")));
    CHECK_FALSE(cidr_of("::/0").contains(cidr_of("10.0.0.0/8")));
  }
  SECTION("a block contains itself and narrower blocks inside it, not wider ones") {
    CHECK(ten.contains(ten));
    CHECK(ten.contains(cidr_of("10.1.0.0/16")));
    CHECK(ten.contains(cidr_of("10.1.2.3")));
    CHECK_FALSE(cidr_of("10.1.0.0/16").contains(ten));
    CHECK_FALSE(ten.contains(cidr_of("11.0.0.0/16")));
  }
  SECTION("IPv6 blocks work the same way") {
    const Cidr doc = cidr_of("2001:db8::/32");
    CHECK(doc.contains(ip_of("2001:db8:ffff::1")));
    CHECK_FALSE(doc.contains(ip_of("2001:db9::1")));
    CHECK(doc.contains(cidr_of("2001:db8:1::/48")));
    CHECK(cidr_of("::/0").contains(doc));
  }
  SECTION("a mapped address is contained in the IPv4 block") {
    CHECK(ten.contains(ip_of("::ffff:10.9.9.9")));
  }
}

TEST_CASE("policy::intersect of CIDR blocks is the narrower block or nothing",
          "[policy][address]") {
  SECTION("nested blocks intersect in the inner one, in either order") {
    const Cidr outer = cidr_of("10.0.0.0/8");
    const Cidr inner = cidr_of("10.20.0.0/16");
    CHECK(intersect(outer, inner) == inner);
    CHECK(intersect(inner, outer) == inner);
  }
  SECTION("a block intersected with itself is itself") {
    CHECK(intersect(cidr_of("2001:db8::/32"), cidr_of("2001:db8::/32")) ==
          cidr_of("2001:db8::/32"));
  }
  SECTION("disjoint blocks have no intersection") {
    CHECK_FALSE(intersect(cidr_of("10.0.0.0/8"), cidr_of("11.0.0.0/8")));
    CHECK_FALSE(intersect(cidr_of("10.0.0.0/24"), cidr_of("10.0.1.0/24")));
  }
  SECTION("blocks of different families have no intersection") {
    CHECK_FALSE(intersect(cidr_of("0.0.0.0/0"), cidr_of("::/0")));
  }
}

TEST_CASE("policy::normalize removes contained blocks and sorts", "[policy][address]") {
  SECTION("duplicates and nested blocks collapse into the widest") {
    const std::vector<Cidr> out = normalize({cidr_of("10.1.0.0/16"), cidr_of("10.0.0.0/8"),
                                             cidr_of("10.0.0.0/8"), cidr_of("10.1.2.3")});
    CHECK(out == std::vector<Cidr>{cidr_of("10.0.0.0/8")});
  }
  SECTION("disjoint blocks all stay, sorted") {
    const std::vector<Cidr> out =
        normalize({cidr_of("192.168.0.0/16"), cidr_of("2001:db8::/32"), cidr_of("10.0.0.0/8"),
                   cidr_of("172.16.0.0/12")});
    REQUIRE(out.size() == 4);
    CHECK(std::is_sorted(out.begin(), out.end()));
    CHECK(out[0] == cidr_of("10.0.0.0/8"));
  }
  SECTION("the result is a fixed point and independent of input order") {
    std::vector<Cidr> in = {cidr_of("10.0.0.0/24"), cidr_of("2001:db8:1::/48"),
                            cidr_of("10.0.0.0/16"), cidr_of("2001:db8::/32"),
                            cidr_of("192.0.2.1")};
    const std::vector<Cidr> once = normalize(in);
    CHECK(normalize(once) == once);
    std::reverse(in.begin(), in.end());
    CHECK(normalize(in) == once);
    CHECK(once == std::vector<Cidr>{cidr_of("10.0.0.0/16"), cidr_of("192.0.2.1"),
                                    cidr_of("2001:db8::/32")});
  }
  SECTION("an empty set stays empty") { CHECK(normalize({}).empty()); }
}

TEST_CASE("policy::covered_by asks whether one block of a set holds the block",
          "[policy][address]") {
  const std::vector<Cidr> set = {cidr_of("10.0.0.0/8"), cidr_of("2001:db8::/32")};
  SECTION("a block inside one member is covered") {
    CHECK(covered_by(cidr_of("10.3.0.0/16"), set));
    CHECK(covered_by(cidr_of("2001:db8::1"), set));
    CHECK(covered_by(cidr_of("10.0.0.0/8"), set));
  }
  SECTION("a block that is wider than every member is not covered") {
    CHECK_FALSE(covered_by(cidr_of("10.0.0.0/7"), set));
  }
  SECTION("a block outside every member is not covered") {
    CHECK_FALSE(covered_by(cidr_of("11.0.0.1"), set));
  }
  SECTION("nothing is covered by an empty set") {
    CHECK_FALSE(covered_by(cidr_of("10.0.0.1"), {}));
  }
  SECTION("a block spanning two adjacent members is not covered by either") {
    CHECK_FALSE(covered_by(cidr_of("10.0.0.0/23"),
                           {cidr_of("10.0.0.0/24"), cidr_of("10.0.1.0/24")}));
  }
}

TEST_CASE("policy::denied_reason names every always-denied range", "[policy][address]") {
  struct Row {
    const char* block;
    const char* why;
  };
  const std::vector<Row> always = {
      {"169.254.0.0/16", "link-local"},
      {"169.254.169.254", "metadata"},
      {"169.254.3.0/24", "link-local"},
      {"fe80::/10", "IPv6 link-local"},
      {"fe80::1", "IPv6 link-local"},
      {"febf:ffff::/32", "IPv6 link-local"},
      {"fd00:ec2::254", "cloud metadata service (IPv6)"},
      {"100.100.100.200", "cloud metadata service"},
  };
  for (const Row& row : always) {
    DYNAMIC_SECTION(row.block << " is denied, even with loopback allowed") {
      const auto strict = denied_reason(cidr_of(row.block), kStrict);
      REQUIRE(strict);
      CHECK_THAT(std::string(*strict), Catch::Contains(row.why));
      const auto lax = denied_reason(cidr_of(row.block), kLoopbackAllowed);
      REQUIRE(lax);
      CHECK(*lax == *strict);
    }
  }
  const std::vector<Row> local = {
      {"127.0.0.0/8", "loopback"},
      {"127.0.0.1", "loopback"},
      {"127.255.255.255", "loopback"},
      {"::1", "loopback"},
      {"0.0.0.0/8", "this-network"},
      {"0.0.0.0", "this-network"},
      {"::", "unspecified"},
  };
  for (const Row& row : local) {
    DYNAMIC_SECTION(row.block << " is denied unless loopback is allowed") {
      const auto strict = denied_reason(cidr_of(row.block), kStrict);
      REQUIRE(strict);
      CHECK_THAT(std::string(*strict), Catch::Contains(row.why));
      CHECK_FALSE(denied_reason(cidr_of(row.block), kLoopbackAllowed));
    }
  }
  SECTION("mapped spellings of denied addresses are denied too") {
    CHECK(denied_reason(cidr_of("::ffff:169.254.169.254"), kLoopbackAllowed));
    CHECK(denied_reason(cidr_of("::ffff:127.0.0.1"), kStrict));
  }
  SECTION("always_denied lists the loopback ranges only when they are denied") {
    CHECK(always_denied(kStrict).size() == always_denied(kLoopbackAllowed).size() + 4);
  }
}

TEST_CASE("policy::denied_reason does not deny a block that merely contains a denied range",
          "[policy][address]") {
  for (const char* block : {"169.254.0.0/15", "169.0.0.0/8", "0.0.0.0/0", "fe80::/9", "::/0",
                            "fd00:ec2::/32", "100.100.100.0/24", "126.0.0.0/7", "0.0.0.0/7",
                            "::/127", "::/64"}) {
    DYNAMIC_SECTION(block << " is not denied") {
      CHECK_FALSE(denied_reason(cidr_of(block), kStrict));
    }
  }
  SECTION("neighbours of the denied ranges are not denied") {
    for (const char* text : {"169.253.255.255", "169.255.0.0", "fec0::1", "fd00:ec2::253",
                             "fd00:ec2::255", "100.100.100.201", "128.0.0.0", "1.0.0.0",
                             "::2"}) {
      INFO(text);
      CHECK_FALSE(denied_reason(cidr_of(text), kStrict));
    }
  }
}
