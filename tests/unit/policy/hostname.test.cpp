#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "sluice/policy/hostname.h"

using namespace sluice::policy;

namespace {

// A name of exactly `length` characters made of full 63-character labels
// and a shorter last one.
std::string name_of_length(std::size_t length) {
  std::string out;
  char fill = 'a';
  while (out.size() < length) {
    if (!out.empty()) out += '.';
    const std::size_t room = length - out.size();
    // Never leave room for only an empty last label.
    std::size_t label = std::min<std::size_t>(kMaxLabelLength, room);
    if (room > label && room - label == 1) --label;
    out += std::string(label, fill);
    fill = fill == 'z' ? 'a' : static_cast<char>(fill + 1);
  }
  return out;
}

HostPattern pattern_of(std::string_view text) {
  auto r = parse_host_pattern(text);
  INFO("parse_host_pattern(" << text << ")");
  REQUIRE(r);
  return *r;
}

void require_rejected(std::string_view text, ErrorCode code) {
  auto r = canonical_hostname(text);
  INFO("canonical_hostname(\"" << text << "\")");
  REQUIRE_FALSE(r);
  CHECK(to_string(r.error().code) == to_string(code));
}

}  // namespace

TEST_CASE("policy::canonical_hostname lowercases and strips one trailing dot",
          "[policy][hostname]") {
  SECTION("upper-case letters are folded") {
    CHECK(canonical_hostname("API.Anthropic.COM") == "api.anthropic.com");
  }
  SECTION("the absolute form loses its trailing dot") {
    CHECK(canonical_hostname("example.com.") == "example.com");
  }
  SECTION("only one trailing dot is stripped") {
    require_rejected("example.com..", ErrorCode::bad_hostname);
  }
  SECTION("digits and inner hyphens are kept") {
    CHECK(canonical_hostname("a-1.b2-c.example") == "a-1.b2-c.example");
  }
  SECTION("a single label is a host name") {
    CHECK(canonical_hostname("intranet") == "intranet");
  }
  SECTION("a label may start with a digit") {
    CHECK(canonical_hostname("1e100.net") == "1e100.net");
    CHECK(canonical_hostname("3com.com") == "3com.com");
  }
}

TEST_CASE("policy::canonical_hostname bounds the name to 253 characters",
          "[policy][hostname]") {
  SECTION("253 characters are accepted") {
    const std::string name = name_of_length(kMaxHostnameLength);
    REQUIRE(name.size() == 253);
    CHECK(canonical_hostname(name) == name);
  }
  SECTION("253 characters plus the trailing dot are accepted") {
    const std::string name = name_of_length(kMaxHostnameLength);
    CHECK(canonical_hostname(name + ".") == name);
  }
  SECTION("254 characters are refused") {
    const std::string name = name_of_length(kMaxHostnameLength + 1);
    REQUIRE(name.size() == 254);
    require_rejected(name, ErrorCode::bad_hostname);
    CHECK_THAT(canonical_hostname(name).error().message, Catch::Contains("253"));
  }
  SECTION("a huge input is refused with a bounded message") {
    auto r = canonical_hostname(std::string(100000, 'a'));
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::bad_hostname);
    CHECK(r.error().message.size() < 200);
  }
}

TEST_CASE("policy::canonical_hostname bounds labels to 63 characters", "[policy][hostname]") {
  SECTION("63 characters are accepted") {
    const std::string name = std::string(63, 'a') + ".example.com";
    CHECK(canonical_hostname(name) == name);
  }
  SECTION("64 characters are refused, wherever the label is") {
    require_rejected(std::string(64, 'a') + ".example.com", ErrorCode::bad_hostname);
    require_rejected("www." + std::string(64, 'b') + ".com", ErrorCode::bad_hostname);
    require_rejected("www.example." + std::string(64, 'c'), ErrorCode::bad_hostname);
    CHECK_THAT(canonical_hostname(std::string(64, 'a') + ".com").error().message,
               Catch::Contains("63"));
  }
}

TEST_CASE("policy::canonical_hostname refuses empty names and empty labels",
          "[policy][hostname]") {
  SECTION("an empty string is empty") { require_rejected("", ErrorCode::empty); }
  SECTION("a lone dot has an empty label") { require_rejected(".", ErrorCode::bad_hostname); }
  SECTION("a leading dot, doubled dots and two trailing dots leave an empty label") {
    for (const char* text : {".example.com", "a..example.com", "example.com..", ".."}) {
      require_rejected(text, ErrorCode::bad_hostname);
      CHECK_THAT(canonical_hostname(text).error().message, Catch::Contains("empty label"));
    }
  }
}

TEST_CASE("policy::canonical_hostname refuses leading and trailing hyphens",
          "[policy][hostname]") {
  for (const char* text : {"-example.com", "example-.com", "www.-a.com", "www.a-.com",
                           "example.com-", "-"}) {
    DYNAMIC_SECTION("\"" << text << "\" is refused") {
      require_rejected(text, ErrorCode::bad_hostname);
      CHECK_THAT(canonical_hostname(text).error().message, Catch::Contains("'-'"));
    }
  }
}

TEST_CASE("policy::canonical_hostname allows letters, digits and hyphens only",
          "[policy][hostname]") {
  for (const char* text :
       {"_dmarc.example.com", "my_host.example.com", "exa mple.com", "example.com/path",
        "user@example.com", "example.com:443", "a+b.example.com", "ex!ample.com",
        "example.com\t", "tab\x01.example.com", "\"quoted\".com", "a\\b.com", "%41.com"}) {
    DYNAMIC_SECTION("\"" << text << "\" is refused") {
      require_rejected(text, ErrorCode::bad_hostname);
      CHECK_THAT(canonical_hostname(text).error().message, Catch::Contains("invalid character"));
    }
  }
  SECTION("a NUL byte inside the name is an invalid character") {
    require_rejected(std::string("example\0.com", 12), ErrorCode::bad_hostname);
  }
  SECTION("the message quotes control characters as escapes") {
    const auto r = canonical_hostname("tab\x01.example.com");
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Catch::Contains("\\x01"));
  }
}

TEST_CASE("policy::canonical_hostname refuses Unicode names as non_ascii",
          "[policy][hostname]") {
  SECTION("UTF-8 letters") {
    require_rejected("b\xc3\xbc" "cher.de", ErrorCode::non_ascii);
    require_rejected("\xe4\xb8\xad\xe5\x9b\xbd.cn", ErrorCode::non_ascii);
  }
  SECTION("a stray high byte") { require_rejected("example.com\xff", ErrorCode::non_ascii); }
  SECTION("the message points to punycode") {
    CHECK_THAT(canonical_hostname("b\xc3\xbc" "cher.de").error().message,
               Catch::Contains("punycode"));
  }
}

TEST_CASE("policy::canonical_hostname accepts valid punycode labels", "[policy][hostname]") {
  for (const char* text : {"xn--bcher-kva.de", "xn--mnchen-3ya.de", "xn--fiqs8s",
                           "www.xn--wgbh1c", "xn--e1afmkfd.xn--p1ai"}) {
    DYNAMIC_SECTION("\"" << text << "\" is accepted") { CHECK(canonical_hostname(text) == text); }
  }
  SECTION("an upper-case A-label is folded to lower case") {
    CHECK(canonical_hostname("XN--BCHER-KVA.de") == "xn--bcher-kva.de");
  }
}

TEST_CASE("policy::canonical_hostname refuses xn-- labels that do not decode",
          "[policy][hostname]") {
  for (const char* text : {"xn--zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz9", "xn--", "xn--.com",
                           "www.xn--.example", "xn--abc-", "xn---abc.com", "xn--99999999.com"}) {
    DYNAMIC_SECTION("\"" << text << "\" is bad punycode") {
      require_rejected(text, ErrorCode::bad_punycode);
      CHECK_THAT(canonical_hostname(text).error().message, Catch::Contains("not valid punycode"));
    }
  }
}

TEST_CASE("policy::canonical_hostname refuses other labels with -- in positions 3-4",
          "[policy][hostname]") {
  for (const char* text : {"ab--c", "ab--c.example.com", "www.zz--top.com", "--ab.com"}) {
    DYNAMIC_SECTION("\"" << text << "\" is reserved") {
      require_rejected(text, ErrorCode::bad_hostname);
    }
  }
  SECTION("the message names the reservation") {
    CHECK_THAT(canonical_hostname("ab--c.example.com").error().message,
               Catch::Contains("reserved"));
  }
  SECTION("a double hyphen elsewhere is fine") {
    CHECK(canonical_hostname("a--b.example.com") == "a--b.example.com");
    CHECK(canonical_hostname("abc--d.example.com") == "abc--d.example.com");
  }
}

TEST_CASE("policy::canonical_hostname refuses a numeric top-level label", "[policy][hostname]") {
  SECTION("an all-digit last label is not a host name") {
    for (const char* text : {"example.123", "1.2.3.4", "1.2.3", "10", "256.256.256.256",
                             "example.123."}) {
      require_rejected(text, ErrorCode::bad_hostname);
      CHECK_THAT(canonical_hostname(text).error().message,
                 Catch::Contains("numeric top-level label"));
    }
  }
  SECTION("digits in other labels or mixed into the last one are fine") {
    CHECK(canonical_hostname("123.example.com") == "123.example.com");
    CHECK(canonical_hostname("example.a1") == "example.a1");
    CHECK(canonical_hostname("1.2.3.4a") == "1.2.3.4a");
  }
}

TEST_CASE("policy::parse_host_pattern reads names and leftmost wildcards",
          "[policy][hostname]") {
  SECTION("a plain name is not a wildcard") {
    const HostPattern p = pattern_of("API.Example.com.");
    CHECK_FALSE(p.wildcard);
    CHECK(p.name == "api.example.com");
    CHECK(p.to_string() == "api.example.com");
  }
  SECTION("*.name stores the name without the wildcard label") {
    const HostPattern p = pattern_of("*.Example.COM");
    CHECK(p.wildcard);
    CHECK(p.name == "example.com");
    CHECK(p.to_string() == "*.example.com");
  }
  SECTION("a wildcard over a deeper name is fine") {
    CHECK(pattern_of("*.eu.api.example.com").name == "eu.api.example.com");
  }
  SECTION("errors in the name after the wildcard are the name's errors") {
    auto r = parse_host_pattern("*.exa_mple.com");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::bad_hostname);
    auto u = parse_host_pattern("*.b\xc3\xbc" "cher.de");
    REQUIRE_FALSE(u);
    CHECK(u.error().code == ErrorCode::non_ascii);
  }
}

TEST_CASE("policy::parse_host_pattern refuses misplaced and too broad wildcards",
          "[policy][hostname]") {
  struct Row {
    const char* text;
    const char* fragment;
  };
  const std::vector<Row> rows = {
      {"*", "bare '*'"},
      {"*.", "without a domain"},
      {"*.com", "too broad"},
      {"*.com.", "too broad"},
      {"*.COM", "too broad"},
      {"a.*.b", "whole leftmost label"},
      {"a.*.example.com", "whole leftmost label"},
      {"*foo.com", "whole leftmost label"},
      {"foo*.example.com", "whole leftmost label"},
      {"f*o.example.com", "whole leftmost label"},
      {"**.a.com", "whole leftmost label"},
      {"*.*.example.com", "whole leftmost label"},
      {"example.*", "whole leftmost label"},
      {"*example.com", "whole leftmost label"},
  };
  for (const Row& row : rows) {
    DYNAMIC_SECTION("\"" << row.text << "\" is a bad wildcard") {
      auto r = parse_host_pattern(row.text);
      REQUIRE_FALSE(r);
      CHECK(r.error().code == ErrorCode::bad_wildcard);
      CHECK_THAT(r.error().message, Catch::Contains(row.fragment));
    }
  }
  SECTION("canonical_hostname never accepts a wildcard") {
    auto r = canonical_hostname("*.example.com");
    REQUIRE_FALSE(r);
    CHECK(r.error().code == ErrorCode::bad_wildcard);
  }
}

TEST_CASE("policy::HostPattern::matches a name or the strict subdomains of a wildcard",
          "[policy][hostname]") {
  SECTION("a plain name matches itself only") {
    const HostPattern p = pattern_of("api.example.com");
    CHECK(p.matches("api.example.com"));
    CHECK_FALSE(p.matches("x.api.example.com"));
    CHECK_FALSE(p.matches("example.com"));
    CHECK_FALSE(p.matches("api.example.co"));
  }
  const HostPattern wild = pattern_of("*.example.com");
  SECTION("a wildcard matches direct and deeper subdomains") {
    CHECK(wild.matches("a.example.com"));
    CHECK(wild.matches("a.b.c.example.com"));
  }
  SECTION("a wildcard does not match its apex") { CHECK_FALSE(wild.matches("example.com")); }
  SECTION("a wildcard does not match a name that merely ends with the same text") {
    CHECK_FALSE(wild.matches("xexample.com"));
    CHECK_FALSE(wild.matches("a.xexample.com"));
    CHECK_FALSE(wild.matches("example.com.evil.net"));
  }
  SECTION("a wildcard does not match unrelated or empty names") {
    CHECK_FALSE(wild.matches("example.org"));
    CHECK_FALSE(wild.matches(".example.com"));
    CHECK_FALSE(wild.matches(""));
  }
}

TEST_CASE("policy::HostPattern::within tells whether every match is also matched by another",
          "[policy][hostname]") {
  const HostPattern wild = pattern_of("*.example.com");
  SECTION("a pattern is within itself") {
    CHECK(wild.within(wild));
    CHECK(pattern_of("a.example.com").within(pattern_of("a.example.com")));
  }
  SECTION("a subdomain name is within the wildcard, its apex is not") {
    CHECK(pattern_of("a.example.com").within(wild));
    CHECK(pattern_of("a.b.example.com").within(wild));
    CHECK_FALSE(pattern_of("example.com").within(wild));
  }
  SECTION("a deeper wildcard is within a shallower one, not the reverse") {
    CHECK(pattern_of("*.a.example.com").within(wild));
    CHECK_FALSE(wild.within(pattern_of("*.a.example.com")));
  }
  SECTION("a wildcard is never within a plain name") {
    CHECK_FALSE(wild.within(pattern_of("example.com")));
    CHECK_FALSE(wild.within(pattern_of("a.example.com")));
  }
  SECTION("different names are not within each other") {
    CHECK_FALSE(pattern_of("a.example.com").within(pattern_of("b.example.com")));
    CHECK_FALSE(pattern_of("a.xexample.com").within(wild));
    CHECK_FALSE(pattern_of("*.xexample.com").within(wild));
  }
}

TEST_CASE("policy::intersect of host patterns is the narrower pattern or nothing",
          "[policy][hostname]") {
  const HostPattern wild = pattern_of("*.example.com");
  SECTION("a name under a wildcard, in either order") {
    const HostPattern a = pattern_of("a.example.com");
    CHECK(intersect(wild, a) == a);
    CHECK(intersect(a, wild) == a);
  }
  SECTION("nested wildcards give the deeper one") {
    const HostPattern deep = pattern_of("*.eu.example.com");
    CHECK(intersect(wild, deep) == deep);
    CHECK(intersect(deep, wild) == deep);
  }
  SECTION("equal patterns give themselves") { CHECK(intersect(wild, wild) == wild); }
  SECTION("the apex and its wildcard share nothing") {
    CHECK_FALSE(intersect(wild, pattern_of("example.com")));
  }
  SECTION("unrelated patterns share nothing") {
    CHECK_FALSE(intersect(wild, pattern_of("*.example.org")));
    CHECK_FALSE(intersect(pattern_of("a.example.com"), pattern_of("b.example.com")));
    CHECK_FALSE(intersect(wild, pattern_of("*.xexample.com")));
  }
}
