// Table-driven: every malformed document or allowlist entry must be refused
// with one specific error code, at the right JSON path, with a message a
// person can act on.
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sluice/policy/policy.h"

using namespace sluice::policy;

namespace {

struct Malformed {
  std::string what;      // names the row in the report
  std::string document;  // the policy text given to parse_policy
  bool is_entry;         // a row about one allowlist entry
  std::string entry;     // that entry's text
  ErrorCode code;
  std::string path;
  std::string fragment;  // expected somewhere in the message
};

constexpr char kFlags[] =
    R"("allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": false)";

std::string with_flags(std::string_view rest) {
  return std::string("{") + kFlags + std::string(rest) + "}";
}

// A row about the document as a whole.
Malformed doc(std::string what, std::string document, ErrorCode code, std::string path,
              std::string fragment) {
  return {std::move(what), std::move(document), false, "", code, std::move(path),
          std::move(fragment)};
}

// A row about one entry: it is placed second in an otherwise valid allowlist,
// so the path also shows the index is counted.
Malformed entry(std::string what, std::string text, ErrorCode code, std::string fragment) {
  const nlohmann::json list = nlohmann::json::array({"ok.example.com", text});
  std::string document = with_flags(R"(, "egress_allowlist": )" + list.dump());
  return {std::move(what), std::move(document), true, std::move(text), code,
          "egress_allowlist[1]", std::move(fragment)};
}


std::string nested(int arrays) {
  return with_flags(R"(, "egress_allowlist": )" + std::string(arrays, '[') +
                    std::string(arrays, ']'));
}

const std::string kValid = with_flags("");
const std::string kLabel64(64, 'a');

std::vector<Malformed> table() {
  using E = ErrorCode;
  return {
      // Not JSON at all, or not only JSON.
      doc("plain text", "allow everything", E::syntax, "", "invalid JSON"),
      doc("an empty document", "", E::syntax, "", "invalid JSON"),
      doc("only whitespace", " \n\t ", E::syntax, "", "invalid JSON"),
      doc("a truncated object", R"({"allow_llm_egress": true, )", E::syntax, "", "invalid JSON"),
      doc("a missing comma", R"({"allow_llm_egress": true "allow_prospecting": false})",
          E::syntax, "", "invalid JSON"),
      doc("a trailing comma", with_flags(","), E::syntax, "", "invalid JSON"),
      doc("single quotes", "{'allow_llm_egress': true}", E::syntax, "", "invalid JSON"),
      doc("a comment", "/* policy */" + kValid, E::syntax, "", "invalid JSON"),
      doc("NaN as a value", R"({"allow_llm_egress": NaN})", E::syntax, "", "invalid JSON"),
      doc("trailing garbage", kValid + " garbage", E::syntax, "", "invalid JSON"),
      doc("a second document", kValid + kValid, E::syntax, "", "invalid JSON"),
      doc("invalid UTF-8 in a string", with_flags(", \"egress_allowlist\": [\"\xff\"]"),
          E::syntax, "", "invalid JSON"),

      // Valid JSON, but not a policy object.
      doc("an array at the top level", "[]", E::wrong_type, "",
          "must be a JSON object, got an array"),
      doc("a string at the top level", R"("policy")", E::wrong_type, "", "got a string"),
      doc("a number at the top level", "42", E::wrong_type, "", "got a number"),
      doc("null at the top level", "null", E::wrong_type, "", "got null"),
      doc("a boolean at the top level", "true", E::wrong_type, "", "got a boolean"),

      // Fields.
      doc("an unknown field", with_flags(R"(, "allow_everything": true)"), E::unknown_field,
          "allow_everything", "unknown field"),
      doc("a misspelled field", with_flags(R"(, "egress_allow_list": [])"), E::unknown_field,
          "egress_allow_list", "expected one of"),
      doc("an unknown field with an unprintable name", with_flags(R"(, "a b.c": 1)"),
          E::unknown_field, "\"a b.c\"", "unknown field"),
      doc("allow_llm_egress missing",
          R"({"allow_prospecting": false, "discovery_samples": false})", E::missing_field,
          "allow_llm_egress", "required field missing"),
      doc("allow_prospecting missing",
          R"({"allow_llm_egress": false, "discovery_samples": false})", E::missing_field,
          "allow_prospecting", "required field missing"),
      doc("discovery_samples missing",
          R"({"allow_llm_egress": false, "allow_prospecting": false, "egress_allowlist": []})",
          E::missing_field, "discovery_samples", "required field missing"),
      doc("allow_llm_egress as a string",
          R"({"allow_llm_egress": "true", "allow_prospecting": false, "discovery_samples": false})",
          E::wrong_type, "allow_llm_egress", "expected true or false, got a string"),
      doc("allow_llm_egress as null",
          R"({"allow_llm_egress": null, "allow_prospecting": false, "discovery_samples": false})",
          E::wrong_type, "allow_llm_egress", "got null"),
      doc("allow_prospecting as a number",
          R"({"allow_llm_egress": true, "allow_prospecting": 0, "discovery_samples": false})",
          E::wrong_type, "allow_prospecting", "got a number"),
      doc("allow_prospecting as an array",
          R"({"allow_llm_egress": true, "allow_prospecting": [], "discovery_samples": false})",
          E::wrong_type, "allow_prospecting", "got an array"),
      doc("discovery_samples as an object",
          R"({"allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": {}})",
          E::wrong_type, "discovery_samples", "got an object"),
      doc("discovery_samples as 1.0",
          R"({"allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": 1.0})",
          E::wrong_type, "discovery_samples", "got a number"),
      doc("egress_allowlist as a string", with_flags(R"(, "egress_allowlist": "a.example.com")"),
          E::wrong_type, "egress_allowlist", "expected an array of strings, got a string"),
      doc("egress_allowlist as an object", with_flags(R"(, "egress_allowlist": {"a": "b"})"),
          E::wrong_type, "egress_allowlist", "got an object"),
      doc("egress_allowlist as a boolean", with_flags(R"(, "egress_allowlist": false)"),
          E::wrong_type, "egress_allowlist", "got a boolean"),
      doc("egress_allowlist as a number", with_flags(R"(, "egress_allowlist": 0)"),
          E::wrong_type, "egress_allowlist", "got a number"),
      doc("a number in the allowlist", with_flags(R"(, "egress_allowlist": [443])"),
          E::wrong_type, "egress_allowlist[0]", "expected a string, got a number"),
      doc("null in the allowlist", with_flags(R"(, "egress_allowlist": ["a.example.com", null])"),
          E::wrong_type, "egress_allowlist[1]", "expected a string, got null"),
      doc("an array in the allowlist", with_flags(R"(, "egress_allowlist": [["a.example.com"]])"),
          E::wrong_type, "egress_allowlist[0]", "got an array"),
      doc("an object in the allowlist",
          with_flags(R"(, "egress_allowlist": [{"host": "a.example.com"}])"), E::wrong_type,
          "egress_allowlist[0]", "got an object"),
      doc("a boolean in the allowlist", with_flags(R"(, "egress_allowlist": [true])"),
          E::wrong_type, "egress_allowlist[0]", "got a boolean"),

      // Structure bounds and duplicate keys.
      doc("an allowlist nested too deep", nested(kMaxJsonDepth), E::too_large, "",
          "nested deeper than 32 levels"),
      doc("an unknown field nested too deep",
          with_flags(R"(, "x": )" + std::string(40, '[') + std::string(40, ']')), E::too_large,
          "", "nested deeper"),
      doc("a duplicate flag", with_flags(R"(, "discovery_samples": true)"), E::duplicate_key, "",
          "duplicate key \"discovery_samples\""),
      doc("a duplicate allowlist",
          with_flags(R"(, "egress_allowlist": [], "egress_allowlist": ["a.example.com"])"),
          E::duplicate_key, "", "duplicate key \"egress_allowlist\""),
      doc("too many entries",
          with_flags(R"(, "egress_allowlist": )" +
                     nlohmann::json(std::vector<std::string>(4097, "a.example.com")).dump()),
          E::too_many, "egress_allowlist", "at most 4096"),
      doc("a document over the size bound",
          kValid + std::string(kMaxPolicyBytes, ' '), E::too_large, "", "larger than"),
      doc("a document of more values than a policy holds",
          with_flags(R"(, "x": [)" + [] {
            std::string many;
            for (std::size_t i = 0; i < kMaxPolicyValues; ++i) many += i ? ",0" : "0";
            return many;
          }() + "]"),
          E::too_large, "", "more values than allowed"),

      // Entries: emptiness and length.
      entry("an empty entry", "", E::empty, "empty entry"),
      entry("an entry over kMaxEntryLength", std::string(kMaxEntryLength + 1, 'a'), E::too_large,
            "entry longer than 300"),
      entry("an empty host before a port", ":443", E::empty, "empty host name"),

      // Entries: host name rules.
      entry("an underscore", "_acme.example.com", E::bad_hostname, "invalid character \"_\""),
      entry("a space", "exa mple.com", E::bad_hostname, "invalid character \" \""),
      entry("a URL instead of a host", "https://api.example.com", E::bad_url,
            "not a URL: write \"api.example.com:443\""),
      entry("a path after the host", "api.example.com/v1", E::bad_prefix, "host names take no path"),
      entry("a leading hyphen", "-api.example.com", E::bad_hostname, "starts or ends with '-'"),
      entry("a trailing hyphen", "api-.example.com", E::bad_hostname, "starts or ends with '-'"),
      entry("an empty label", "api..example.com", E::bad_hostname, "empty label"),
      entry("a leading dot", ".example.com", E::bad_hostname, "empty label"),
      entry("two trailing dots", "example.com..", E::bad_hostname, "empty label"),
      entry("a 64-character label", kLabel64 + ".example.com", E::bad_hostname,
            "label longer than 63"),
      entry("a 254-character name",
            kLabel64.substr(1) + "." + kLabel64.substr(1) + "." + kLabel64.substr(1) + "." +
                std::string(62, 'z'),
            E::bad_hostname, "longer than 253"),
      entry("a numeric top-level label", "example.123", E::bad_hostname, "numeric top-level"),
      entry("a reserved ab-- label", "ab--cd.example.com", E::bad_hostname, "reserved"),
      entry("a Unicode name", "b\xc3\xbc" "cher.de", E::non_ascii, "punycode"),
      entry("a Unicode wildcard", "*.b\xc3\xbc" "cher.de:443", E::non_ascii, "punycode"),
      entry("invalid punycode", "xn--zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz9.com", E::bad_punycode,
            "not valid punycode"),
      entry("an empty punycode label", "xn--.example.com", E::bad_punycode, "not valid punycode"),
      entry("a control character", "api\x01.example.com", E::bad_hostname, "\\x01"),
      entry("a NUL byte", std::string("api\0.example.com", 16), E::bad_hostname, "\\x00"),

      // Entries: wildcard rules.
      entry("a bare star", "*", E::bad_wildcard, "bare '*'"),
      entry("a bare star with a port", "*:443", E::bad_wildcard, "bare '*'"),
      entry("a wildcard over a TLD", "*.com", E::bad_wildcard, "too broad"),
      entry("a wildcard over a TLD with a port", "*.com:443", E::bad_wildcard, "too broad"),
      entry("a wildcard without a domain", "*.", E::bad_wildcard, "without a domain"),
      entry("a star in the middle", "a.*.example.com", E::bad_wildcard, "whole leftmost label"),
      entry("a star inside a label", "*foo.example.com", E::bad_wildcard, "whole leftmost label"),
      entry("a double star", "**.example.com", E::bad_wildcard, "whole leftmost label"),
      entry("two wildcard labels", "*.*.example.com", E::bad_wildcard, "whole leftmost label"),

      // Entries: IPv4.
      entry("three octets", "10.0.0", E::bad_address, "not an IPv4 address"),
      entry("an octet over 255", "10.0.0.256", E::bad_address, "not an IPv4 address"),
      entry("a leading zero", "10.0.0.01", E::bad_address, "not an IPv4 address"),
      entry("five octets", "10.0.0.0.1:443", E::bad_address, "not an IPv4 address"),
      entry("a hex octet with a port", "0x0a.0.0.1:443", E::bad_hostname,
            "numeric top-level label"),

      // Entries: IPv6.
      entry("a triple colon", "2001:db8:::1", E::bad_address, "not an IPv6 address"),
      entry("a zone id", "fe80::1%eth0", E::bad_address, "not an IPv6 address"),
      entry("a bracketed zone id", "[fe80::1%25eth0]:443", E::bad_address, "not an IPv6 address"),
      entry("an unclosed bracket", "[2001:db8::1:443", E::bad_address, "unclosed '['"),
      entry("IPv4 in brackets", "[192.0.2.1]:443", E::bad_address, "only for IPv6"),
      entry("a name in brackets", "[api.example.com]:443", E::bad_address, "only for IPv6"),
      entry("a NUL byte after an IPv6 address", std::string("2001:db8::1\0junk", 16),
            E::bad_address, "\\x00"),

      // Entries: CIDR.
      entry("a prefix over 32", "10.0.0.0/33", E::bad_prefix, "exceeds 32 bits"),
      entry("a prefix over 128", "2001:db8::/129:443", E::bad_prefix, "exceeds 128 bits"),
      entry("a prefix with a leading zero", "10.0.0.0/08", E::bad_prefix, "decimal number"),
      entry("an empty prefix", "10.0.0.0/", E::bad_prefix, "decimal number"),
      entry("an empty prefix with a port", "10.0.0.0/:443", E::bad_prefix, "decimal number"),
      entry("a negative prefix", "10.0.0.0/-8", E::bad_prefix, "decimal number"),
      entry("a mapped prefix under /96", "::ffff:10.0.0.0/95", E::bad_prefix, "/96 to /128"),
      entry("IPv4 host bits", "10.1.2.3/8", E::host_bits_set, "did you mean 10.0.0.0/8?"),
      entry("IPv4 host bits with a port", "192.168.1.1/16:443", E::host_bits_set,
            "did you mean 192.168.0.0/16?"),
      entry("IPv6 host bits", "[2001:db8::1/64]:443", E::host_bits_set,
            "did you mean 2001:db8::/64?"),
      entry("mapped host bits", "::ffff:10.0.0.1/104", E::host_bits_set,
            "did you mean 10.0.0.0/8?"),

      // Entries: ports.
      entry("port 0", "api.example.com:0", E::bad_port, "1 to 65535"),
      entry("port 65536", "api.example.com:65536", E::bad_port, "1 to 65535"),
      entry("a port with a leading zero", "10.0.0.1:0443", E::bad_port, "1 to 65535"),
      entry("a signed port", "[2001:db8::1]:+443", E::bad_port, "1 to 65535"),
      entry("an empty port", "*.example.com:", E::bad_port, "1 to 65535"),
      entry("a named port", "10.0.0.0/8:https", E::bad_port, "1 to 65535"),
      entry("text between bracket and port", "[2001:db8::1]x443", E::bad_port,
            "expected ':port'"),

      // Entries: always-denied ranges.
      entry("the metadata address", "169.254.169.254", E::denied_range,
            "always-denied range (link-local"),
      entry("the link-local block", "169.254.0.0/16:80", E::denied_range, "always-denied"),
      entry("a mapped metadata address", "[::ffff:169.254.169.254]:80", E::denied_range,
            "always-denied range (link-local"),
      entry("IPv6 link-local", "[fe80::1]:443", E::denied_range,
            "always-denied range (IPv6 link-local)"),
      entry("the IPv6 metadata address", "fd00:ec2::254", E::denied_range,
            "always-denied range (cloud metadata service (IPv6))"),
      entry("the other metadata address", "100.100.100.200:80", E::denied_range,
            "always-denied range (cloud metadata service)"),
      entry("IPv4 loopback", "127.0.0.1:8080", E::denied_range, "always-denied range (loopback)"),
      entry("IPv6 loopback", "[::1]:443", E::denied_range, "always-denied range (loopback)"),
      entry("this network", "0.0.0.0", E::denied_range, "always-denied range (this-network"),
      entry("the unspecified IPv6 address", "::", E::denied_range,
            "always-denied range (unspecified"),
  };
}

}  // namespace

TEST_CASE("policy::parse_policy refuses each malformed policy with its code, path and reason",
          "[policy][malformed]") {
  const std::vector<Malformed> rows = table();
  REQUIRE(rows.size() >= 45);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Malformed& row = rows[i];
    DYNAMIC_SECTION("#" << i << ": " << row.what) {
      auto r = parse_policy(row.document);
      REQUIRE_FALSE(r);
      const std::vector<Error>& errors = r.error();
      // One defect per row, so exactly one error; more would mean noise.
      REQUIRE(errors.size() == 1);
      const Error& e = errors[0];
      INFO("got: [" << to_string(e.code) << "] " << e.to_string());
      CHECK(to_string(e.code) == to_string(row.code));
      CHECK(e.path == row.path);
      CHECK_THAT(e.message, Catch::Contains(row.fragment));
    }
  }
}

TEST_CASE("policy::parse_entry refuses each malformed entry of the table on its own",
          "[policy][malformed]") {
  const std::vector<Malformed> rows = table();
  std::size_t entries = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Malformed& row = rows[i];
    if (!row.is_entry) continue;
    ++entries;
    DYNAMIC_SECTION("#" << i << ": " << row.what) {
      auto r = parse_entry(row.entry, DenyOptions{});
      REQUIRE_FALSE(r);
      INFO("got: [" << to_string(r.error().code) << "] " << r.error().to_string());
      CHECK(to_string(r.error().code) == to_string(row.code));
      // A bare entry has no path of its own; the policy adds it.
      CHECK(r.error().path.empty());
      CHECK_THAT(r.error().message, Catch::Contains(row.fragment));
    }
  }
  CHECK(entries >= 45);
}
