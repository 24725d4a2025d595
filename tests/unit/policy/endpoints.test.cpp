#include "test_support.h"

using namespace sluice::policy;
using namespace sluice::policy::testing;

TEST_CASE("policy::parse_endpoint reads URLs with default ports", "[policy][endpoints]") {
  SECTION("https defaults to 443 and the path is ignored") {
    auto e = parse_endpoint("HTTPS://API.Anthropic.com/v1/messages", {});
    REQUIRE(e);
    CHECK(e->spec == "https://api.anthropic.com");
    CHECK(e->port() == 443);
    CHECK(e->entry.host()->name == "api.anthropic.com");
  }
  SECTION("http defaults to 80; an explicit non-default port is kept in the spec") {
    auto e = parse_endpoint("http://ollama.corp.example:11434", {});
    REQUIRE(e);
    CHECK(e->spec == "http://ollama.corp.example:11434");
    CHECK(e->port() == 11434);
    auto d = parse_endpoint("http://10.1.2.3", {});
    REQUIRE(d);
    CHECK(d->port() == 80);
  }
  SECTION("an explicit default port is normalised away") {
    auto e = parse_endpoint("https://api.openai.com:443", {});
    REQUIRE(e);
    CHECK(e->spec == "https://api.openai.com");
  }
  SECTION("IPv6 literals in URLs use brackets") {
    auto e = parse_endpoint("https://[2001:db8::5]:8443/x", {});
    REQUIRE(e);
    CHECK(e->spec == "https://[2001:db8::5]:8443");
    CHECK(e->entry.cidr()->addr == ip("2001:db8::5"));
  }
}

TEST_CASE("policy::parse_endpoint accepts entries with a mandatory port", "[policy][endpoints]") {
  SECTION("host:port, block:port and wildcard:port") {
    CHECK(parse_endpoint("api.apollo.io:443", {})->port() == 443);
    CHECK(parse_endpoint("10.9.0.0/16:8080", {})->entry.cidr()->prefix == 16);
    CHECK(parse_endpoint("*.clearbit.com:443", {})->entry.host()->wildcard);
  }
  SECTION("an entry without a port is refused") {
    auto e = parse_endpoint("api.apollo.io", {});
    REQUIRE_FALSE(e);
    CHECK(e.error().code == ErrorCode::bad_port);
    CHECK_THAT(e.error().message, Catch::Contains("needs a port"));
  }
}

TEST_CASE("policy::parse_endpoint rejects malformed URLs", "[policy][endpoints]") {
  struct Row {
    const char* text;
    ErrorCode code;
    const char* fragment;
  };
  const std::vector<Row> rows = {
      {"ftp://files.example.com", ErrorCode::bad_url, "only http and https"},
      {"https://", ErrorCode::bad_url, "without a host"},
      {"https://user:pw@api.example.com", ErrorCode::bad_url, "credentials"},
      {"https://*.example.com", ErrorCode::bad_url, "one host"},
      {"https://[2001:db8::1/x", ErrorCode::bad_address, "unclosed"},
      {"https://169.254.169.254/latest/meta-data", ErrorCode::denied_range, "always-denied"},
      {"https://api.example.com:0", ErrorCode::bad_port, "1 to 65535"},
      {"https://exa mple.com", ErrorCode::bad_hostname, "invalid character"},
  };
  for (const Row& row : rows) {
    DYNAMIC_SECTION(row.text) {
      auto e = parse_endpoint(row.text, {});
      REQUIRE_FALSE(e);
      CHECK(e.error().code == row.code);
      CHECK_THAT(e.error().message, Catch::Contains(row.fragment));
    }
  }
  SECTION("overlong URLs are refused before parsing") {
    auto e = parse_endpoint("https://a.example.com/" + std::string(5000, 'x'), {});
    REQUIRE_FALSE(e);
    CHECK(e.error().code == ErrorCode::too_large);
  }
}

TEST_CASE("policy::parse_endpoints reads a whole configuration", "[policy][endpoints]") {
  const EndpointsConfig c = config_of(R"({
    "internal_networks": ["10.0.0.0/8", "10.20.0.0/16", "fd00::/8"],
    "internal_domains": ["*.corp.example", "*.corp.example"],
    "endpoints": {"llm": ["https://api.anthropic.com", "https://api.anthropic.com:443"],
                  "prospecting": ["https://api.apollo.io"]}})");

  SECTION("internal networks are normalised: nested blocks collapse") {
    REQUIRE(c.internal_networks.size() == 2);
    CHECK(c.internal_networks[0].to_string() == "10.0.0.0/8");
  }
  SECTION("duplicate endpoints and domains collapse") {
    CHECK(c.of(Purpose::llm).size() == 1);
    CHECK(c.internal_domains.size() == 1);
  }
  SECTION("absent purposes have no endpoints") { CHECK(c.of(Purpose::embeddings).empty()); }
  SECTION("internal names are those under internal_domains") {
    CHECK(c.is_internal_name(host("ollama.corp.example")));
    CHECK(c.is_internal_name(host("*.gpu.corp.example")));
    CHECK_FALSE(c.is_internal_name(host("corp.example")));
    CHECK_FALSE(c.is_internal_name(host("api.anthropic.com")));
  }
  SECTION("serialising and parsing again gives the same configuration") {
    CHECK(config_of(to_json(c).dump()) == c);
  }
}

TEST_CASE("policy::parse_endpoints reports every error with its path", "[policy][endpoints]") {
  auto c = parse_endpoints(R"({
    "internal_networks": ["10.0.0.1/8", 7],
    "endpoints": {"llm": ["api.example.com"], "chat": []},
    "extra": true})");
  REQUIRE_FALSE(c);
  std::vector<std::string> paths;
  for (const Error& e : c.error()) paths.push_back(e.path);
  CHECK_THAT(paths, Catch::UnorderedEquals(std::vector<std::string>{
                        "extra", "internal_networks[0]", "internal_networks[1]",
                        "endpoints.chat", "endpoints.llm[0]"}));
}

TEST_CASE("policy::purpose names round-trip", "[policy][endpoints]") {
  for (Purpose p : kPurposes) CHECK(purpose_from_string(to_string(p)) == p);
  CHECK_FALSE(purpose_from_string("LLM"));
  CHECK_FALSE(purpose_from_string(""));
}
