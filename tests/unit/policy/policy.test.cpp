#include <algorithm>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

#include "sluice/policy/policy.h"

using namespace sluice::policy;
using nlohmann::json;

namespace {

constexpr char kFlags[] =
    R"("allow_llm_egress": true, "allow_prospecting": false, "discovery_samples": true)";

// A valid set of flags plus `allowlist` as the raw JSON of egress_allowlist.
std::string with_allowlist(std::string_view allowlist) {
  return std::string("{") + kFlags + R"(, "egress_allowlist": )" + std::string(allowlist) + "}";
}

std::string with_entries(const std::vector<std::string>& entries) {
  return with_allowlist(json(entries).dump());
}

std::string describe(const std::vector<Error>& errors) {
  std::string out;
  for (const Error& e : errors) {
    out += "\n  [" + std::string(to_string(e.code)) + "] " + e.to_string();
  }
  return out;
}

TenantPolicy policy_of(std::string_view text, const DenyOptions& options = {}) {
  auto r = parse_policy(text, options);
  INFO("errors:" << (r ? std::string() : describe(r.error())));
  REQUIRE(r);
  return *r;
}

std::vector<Error> errors_of(std::string_view text, const DenyOptions& options = {}) {
  auto r = parse_policy(text, options);
  REQUIRE_FALSE(r);
  REQUIRE_FALSE(r.error().empty());
  return r.error();
}

std::vector<std::string> texts_of(const TenantPolicy& p) {
  std::vector<std::string> out;
  for (const Entry& e : p.egress_allowlist.value()) out.push_back(e.to_string());
  return out;
}

using CodeAndPath = std::pair<std::string, std::string>;

std::set<CodeAndPath> codes_and_paths(const std::vector<Error>& errors) {
  std::set<CodeAndPath> out;
  for (const Error& e : errors) out.emplace(std::string(to_string(e.code)), e.path);
  return out;
}

// A document whose egress_allowlist is nested so that the innermost array
// sits at `depth` levels, counting the top-level object as level 1.
std::string nested_to_depth(int depth) {
  const int arrays = depth - 1;
  return std::string("{") + kFlags + R"(, "egress_allowlist": )" + std::string(arrays, '[') +
         std::string(arrays, ']') + "}";
}

}  // namespace

TEST_CASE("policy::parse_policy reads the flags and the allowlist", "[policy]") {
  SECTION("the documented example") {
    const TenantPolicy p = policy_of(R"({
      "allow_llm_egress": true, "allow_prospecting": false,
      "discovery_samples": false,
      "egress_allowlist": ["api.anthropic.com", "10.20.0.0/16:443"] })");
    CHECK(p.allow_llm_egress);
    CHECK_FALSE(p.allow_prospecting);
    CHECK_FALSE(p.discovery_samples);
    REQUIRE(p.egress_allowlist);
    CHECK(texts_of(p) == std::vector<std::string>{"api.anthropic.com", "10.20.0.0/16:443"});
  }
  SECTION("each flag is read independently") {
    for (int bits = 0; bits < 8; ++bits) {
      const json doc = {{"allow_llm_egress", (bits & 1) != 0},
                        {"allow_prospecting", (bits & 2) != 0},
                        {"discovery_samples", (bits & 4) != 0}};
      const TenantPolicy p = policy_of(doc.dump());
      CHECK(p.allow_llm_egress == ((bits & 1) != 0));
      CHECK(p.allow_prospecting == ((bits & 2) != 0));
      CHECK(p.discovery_samples == ((bits & 4) != 0));
    }
  }
  SECTION("field order and whitespace do not matter") {
    const TenantPolicy a = policy_of(with_entries({"a.example.com"}));
    const TenantPolicy b = policy_of(
        "\n\t{ \"egress_allowlist\" : [ \"a.example.com\" ] ,\r\n \"discovery_samples\":true,"
        "\"allow_prospecting\":false,\"allow_llm_egress\":true }\n");
    CHECK(a == b);
  }
  SECTION("every kind of entry is accepted") {
    const TenantPolicy p =
        policy_of(with_entries({"api.example.com", "*.example.org:443", "192.0.2.1",
                                "10.0.0.0/8:8443", "[2001:db8::1]:443", "2001:db8::/32"}));
    CHECK(p.egress_allowlist->size() == 6);
  }
}

TEST_CASE("policy::parse_policy tells an absent or null allowlist from an empty one",
          "[policy]") {
  SECTION("an absent allowlist is no allowlist") {
    const TenantPolicy p = policy_of(std::string("{") + kFlags + "}");
    CHECK_FALSE(p.egress_allowlist.has_value());
  }
  SECTION("a null allowlist is no allowlist") {
    const TenantPolicy p = policy_of(with_allowlist("null"));
    CHECK_FALSE(p.egress_allowlist.has_value());
    CHECK(p == policy_of(std::string("{") + kFlags + "}"));
  }
  SECTION("an empty array is an allowlist that allows nothing") {
    const TenantPolicy p = policy_of(with_allowlist("[]"));
    REQUIRE(p.egress_allowlist.has_value());
    CHECK(p.egress_allowlist->empty());
    CHECK_FALSE(p == policy_of(with_allowlist("null")));
  }
  SECTION("to_json keeps the difference") {
    CHECK(to_json(policy_of(with_allowlist("null")))["egress_allowlist"].is_null());
    const json empty = to_json(policy_of(with_allowlist("[]")))["egress_allowlist"];
    CHECK(empty.is_array());
    CHECK(empty.empty());
  }
}

TEST_CASE("policy::parse_policy collapses duplicate entries", "[policy]") {
  SECTION("identical texts collapse") {
    CHECK(policy_of(with_entries({"a.example.com", "a.example.com"})).egress_allowlist->size() ==
          1);
  }
  SECTION("host names differing in case or a trailing dot collapse") {
    const TenantPolicy p =
        policy_of(with_entries({"A.Example.com", "a.example.com.", "a.EXAMPLE.com"}));
    CHECK(texts_of(p) == std::vector<std::string>{"a.example.com"});
  }
  SECTION("an IPv4-mapped address and the IPv4 address collapse") {
    const TenantPolicy p = policy_of(
        with_entries({"::ffff:10.0.0.1", "10.0.0.1", "[::ffff:10.0.0.1]", "10.0.0.1/32"}));
    CHECK(texts_of(p) == std::vector<std::string>{"10.0.0.1"});
  }
  SECTION("different IPv6 spellings collapse") {
    const TenantPolicy p = policy_of(with_entries(
        {"2001:DB8::1", "[2001:db8:0:0:0:0:0:1]", "2001:0db8::0001/128", "[2001:db8::1]"}));
    CHECK(texts_of(p) == std::vector<std::string>{"2001:db8::1"});
  }
  SECTION("the same target with and without a port stays twice") {
    const TenantPolicy p = policy_of(with_entries({"a.example.com:443", "a.example.com"}));
    CHECK(texts_of(p) == std::vector<std::string>{"a.example.com", "a.example.com:443"});
  }
  SECTION("a name and its wildcard are different entries") {
    CHECK(policy_of(with_entries({"*.example.com", "example.com"})).egress_allowlist->size() ==
          2);
  }
}

TEST_CASE("policy::parse_policy sorts the allowlist into a normal form", "[policy]") {
  const std::vector<std::string> entries = {
      "b.example.com",   "10.0.0.1",         "A.example.com",    "*.example.com",
      "::ffff:10.0.0.1", "b.example.com.",   "2001:db8::/32:443", "10.0.0.0/8",
      "192.0.2.1:443",   "192.0.2.1:80",     "[2001:db8::1]",    "*.example.com:443"};
  const TenantPolicy p = policy_of(with_entries(entries));

  SECTION("the entries are strictly increasing") {
    const std::vector<Entry>& list = *p.egress_allowlist;
    CHECK(std::is_sorted(list.begin(), list.end()));
    CHECK(std::adjacent_find(list.begin(), list.end()) == list.end());
  }
  SECTION("host patterns come first, then blocks") {
    CHECK(texts_of(p) ==
          std::vector<std::string>{"a.example.com", "b.example.com", "*.example.com",
                                   "*.example.com:443", "10.0.0.0/8", "10.0.0.1",
                                   "192.0.2.1:80", "192.0.2.1:443", "[2001:db8::/32]:443",
                                   "2001:db8::1"});
  }
  SECTION("the input order does not matter") {
    std::vector<std::string> reversed(entries.rbegin(), entries.rend());
    const TenantPolicy q = policy_of(with_entries(reversed));
    CHECK(q == p);
    CHECK(to_json(q).dump() == to_json(p).dump());
  }
}

TEST_CASE("policy::to_json writes the four fields with canonical entries", "[policy]") {
  const TenantPolicy p =
      policy_of(with_entries({"API.example.com:443", "::ffff:10.0.0.0/104", "[2001:DB8::1]:8443"}));
  const json out = to_json(p);

  SECTION("an object with exactly the four fields") {
    REQUIRE(out.is_object());
    CHECK(out.size() == 4);
    CHECK(out.at("allow_llm_egress") == true);
    CHECK(out.at("allow_prospecting") == false);
    CHECK(out.at("discovery_samples") == true);
  }
  SECTION("the allowlist is an array of canonical strings in normal order") {
    CHECK(out.at("egress_allowlist") ==
          json::array({"api.example.com:443", "10.0.0.0/8", "[2001:db8::1]:8443"}));
  }
  SECTION("no allowlist is written as null, not left out") {
    const json none = to_json(policy_of(with_allowlist("null")));
    REQUIRE(none.contains("egress_allowlist"));
    CHECK(none["egress_allowlist"].is_null());
  }
  SECTION("parsing the output gives the same policy") {
    CHECK(policy_of(out.dump()) == p);
    CHECK(to_json(policy_of(out.dump())) == out);
  }
  SECTION("a default policy has all flags false and no allowlist") {
    CHECK(to_json(TenantPolicy{}) == json::parse(R"({"allow_llm_egress": false,
        "allow_prospecting": false, "discovery_samples": false, "egress_allowlist": null})"));
  }
}

TEST_CASE("policy::parse_policy reports every error in a document with its path", "[policy]") {
  const std::vector<Error> errors = errors_of(R"({
    "allow_llm_egress": "yes",
    "allow_prospecting": false,
    "extra": 1,
    "Allow_LLM_Egress": true,
    "egress_allowlist": ["ok.example.com", "169.254.169.254", "10.0.0.1/8", 7, "*.com",
                         "bad_host.example.com", "example.com:0", "ok.example.com"]
  })");

  SECTION("each problem is reported once under its own path") {
    CHECK(codes_and_paths(errors) ==
          std::set<CodeAndPath>{{"unknown_field", "extra"},
                                {"unknown_field", "Allow_LLM_Egress"},
                                {"wrong_type", "allow_llm_egress"},
                                {"missing_field", "discovery_samples"},
                                {"denied_range", "egress_allowlist[1]"},
                                {"host_bits_set", "egress_allowlist[2]"},
                                {"wrong_type", "egress_allowlist[3]"},
                                {"bad_wildcard", "egress_allowlist[4]"},
                                {"bad_hostname", "egress_allowlist[5]"},
                                {"bad_port", "egress_allowlist[6]"}});
    CHECK(errors.size() == 10);
  }
  SECTION("to_string puts the path before the message") {
    const auto it = std::find_if(errors.begin(), errors.end(),
                                 [](const Error& e) { return e.path == "egress_allowlist[2]"; });
    REQUIRE(it != errors.end());
    CHECK_THAT(it->to_string(), Catch::StartsWith("egress_allowlist[2]: host bits set"));
  }
  SECTION("no partial policy is returned with errors") {
    CHECK_FALSE(parse_policy(with_entries({"ok.example.com", "exa mple.com"})));
  }
}

TEST_CASE("policy::parse_policy caps the number of errors it reports", "[policy]") {
  const auto bad_entries = [](std::size_t n) {
    std::vector<std::string> entries;
    for (std::size_t i = 0; i < n; ++i) entries.push_back("bad_" + std::to_string(i) + ".com");
    return with_entries(entries);
  };

  SECTION("exactly kMaxErrors errors are all reported, without a summary") {
    const std::vector<Error> errors = errors_of(bad_entries(kMaxErrors));
    REQUIRE(errors.size() == kMaxErrors);
    CHECK(errors.back().code == ErrorCode::bad_hostname);
  }
  SECTION("beyond the cap, the first kMaxErrors are kept and a final entry counts the rest") {
    const std::vector<Error> errors = errors_of(bad_entries(100));
    REQUIRE(errors.size() == kMaxErrors + 1);
    for (std::size_t i = 0; i < kMaxErrors; ++i) {
      INFO(i);
      CHECK(errors[i].code == ErrorCode::bad_hostname);
      CHECK(errors[i].path == "egress_allowlist[" + std::to_string(i) + "]");
    }
    CHECK(errors.back().code == ErrorCode::too_many);
    CHECK(errors.back().path.empty());
    CHECK_THAT(errors.back().message, Catch::Contains("36 more errors"));
  }
  SECTION("one error over the cap is counted too") {
    const std::vector<Error> errors = errors_of(bad_entries(kMaxErrors + 1));
    REQUIRE(errors.size() == kMaxErrors + 1);
    CHECK_THAT(errors.back().message, Catch::Contains("1 more errors"));
  }
  SECTION("the output stays bounded for the largest hostile document") {
    const std::vector<Error> errors = errors_of(bad_entries(kMaxAllowlistEntries));
    CHECK(errors.size() == kMaxErrors + 1);
    CHECK_THAT(errors.back().message,
               Catch::Contains(std::to_string(kMaxAllowlistEntries - kMaxErrors) + " more"));
  }
}

TEST_CASE("policy::parse_policy limits the allowlist to 4096 entries", "[policy]") {
  const auto hosts = [](std::size_t n) {
    std::vector<std::string> entries;
    for (std::size_t i = 0; i < n; ++i) entries.push_back("h" + std::to_string(i) + ".example.com");
    return entries;
  };
  REQUIRE(kMaxAllowlistEntries == 4096);

  SECTION("4096 entries are accepted") {
    const TenantPolicy p = policy_of(with_entries(hosts(4096)));
    CHECK(p.egress_allowlist->size() == 4096);
  }
  SECTION("4097 entries are too many") {
    const std::vector<Error> errors = errors_of(with_entries(hosts(4097)));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::too_many);
    CHECK(errors[0].path == "egress_allowlist");
    CHECK_THAT(errors[0].message, Catch::Contains("4097") && Catch::Contains("4096"));
  }
  SECTION("the limit counts entries as written, before duplicates collapse") {
    const std::vector<std::string> same(4097, "a.example.com");
    CHECK(errors_of(with_entries(same))[0].code == ErrorCode::too_many);
  }
}

TEST_CASE("policy::parse_policy refuses duplicate JSON keys", "[policy]") {
  SECTION("a flag given twice, even with the same value") {
    const std::vector<Error> errors = errors_of(
        std::string("{") + kFlags + R"(, "allow_llm_egress": true})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::duplicate_key);
    CHECK_THAT(errors[0].message, Catch::Contains("\"allow_llm_egress\""));
  }
  SECTION("the allowlist given twice") {
    const std::vector<Error> errors =
        errors_of(std::string("{") + kFlags +
                  R"(, "egress_allowlist": ["a.example.com"], "egress_allowlist": null})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::duplicate_key);
  }
  SECTION("a key spelled with an escape is the same key") {
    const std::vector<Error> errors =
        errors_of(std::string("{") + kFlags + R"(, "allow\u005fllm_egress": false})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::duplicate_key);
  }
  SECTION("a duplicate inside a nested object") {
    const std::vector<Error> errors =
        errors_of(std::string("{") + kFlags + R"(, "x": {"a": 1, "a": 2}})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::duplicate_key);
  }
  SECTION("the same key in sibling objects is not a duplicate") {
    const std::vector<Error> errors =
        errors_of(std::string("{") + kFlags + R"(, "x": [{"a": 1}, {"a": 2}]})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::unknown_field);
  }
  SECTION("keys differing in case are different keys") {
    const std::vector<Error> errors =
        errors_of(std::string("{") + kFlags + R"(, "ALLOW_LLM_EGRESS": true})");
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::unknown_field);
  }
}

TEST_CASE("policy::parse_policy bounds the nesting depth", "[policy]") {
  REQUIRE(kMaxJsonDepth == 32);
  SECTION("kMaxJsonDepth levels are parsed and then judged as a policy") {
    const std::vector<Error> errors = errors_of(nested_to_depth(kMaxJsonDepth));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::wrong_type);
    CHECK(errors[0].path == "egress_allowlist[0]");
  }
  SECTION("one level more is too deep") {
    const std::vector<Error> errors = errors_of(nested_to_depth(kMaxJsonDepth + 1));
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::too_large);
    CHECK_THAT(errors[0].message, Catch::Contains("nested deeper than 32"));
  }
  SECTION("objects count as levels too") {
    std::string deep = "{" + std::string(kFlags);
    for (int i = 0; i < kMaxJsonDepth; ++i) deep += R"(, "x": {"y": 1)";
    deep += std::string(kMaxJsonDepth, '}') + "}";
    CHECK(errors_of(deep)[0].code == ErrorCode::too_large);
  }
  SECTION("a hostile depth is refused without exhausting the stack") {
    const std::string deep = std::string(1000000, '[') + std::string(1000000, ']');
    const std::vector<Error> errors = errors_of(deep);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::too_large);
  }
}

TEST_CASE("policy::parse_policy bounds the document size", "[policy]") {
  const std::string body = std::string("{") + kFlags + "}";
  SECTION("a document of exactly kMaxPolicyBytes is parsed") {
    const std::string doc = body + std::string(kMaxPolicyBytes - body.size(), ' ');
    REQUIRE(doc.size() == kMaxPolicyBytes);
    CHECK(policy_of(doc).allow_llm_egress);
  }
  SECTION("one byte more is refused before parsing") {
    const std::string doc = body + std::string(kMaxPolicyBytes - body.size() + 1, ' ');
    const std::vector<Error> errors = errors_of(doc);
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].code == ErrorCode::too_large);
    CHECK_THAT(errors[0].message, Catch::Contains(std::to_string(kMaxPolicyBytes)));
  }
  SECTION("the largest allowlist of long entries fits") {
    std::vector<std::string> entries;
    for (std::size_t i = 0; i < kMaxAllowlistEntries; ++i) {
      const std::string n = std::to_string(i);
      entries.push_back(std::string(63 - n.size(), 'a') + n + "." + std::string(63, 'b') + "." +
                        std::string(63, 'c') + "." + std::string(57, 'd') + ".com:65535");
    }
    const std::string doc = with_entries(entries);
    REQUIRE(doc.size() <= kMaxPolicyBytes);
    CHECK(policy_of(doc).egress_allowlist->size() == kMaxAllowlistEntries);
  }
}

TEST_CASE("policy::parse_policy applies DenyOptions to the allowlist", "[policy]") {
  const std::string loopback = with_entries({"127.0.0.1:8080", "[::1]:443"});
  SECTION("loopback is denied by default") {
    const std::vector<Error> errors = errors_of(loopback);
    CHECK(codes_and_paths(errors) ==
          std::set<CodeAndPath>{{"denied_range", "egress_allowlist[0]"},
                                {"denied_range", "egress_allowlist[1]"}});
    CHECK_THAT(errors[0].message, Catch::Contains("loopback"));
  }
  SECTION("allow_loopback admits 127.0.0.1") {
    const TenantPolicy p = policy_of(loopback, DenyOptions{.allow_loopback = true});
    CHECK(texts_of(p) == std::vector<std::string>{"127.0.0.1:8080", "[::1]:443"});
  }
  SECTION("allow_loopback does not admit metadata addresses") {
    const std::vector<Error> errors =
        errors_of(with_entries({"127.0.0.1", "169.254.169.254"}),
                  DenyOptions{.allow_loopback = true});
    REQUIRE(errors.size() == 1);
    CHECK(errors[0].path == "egress_allowlist[1]");
    CHECK(errors[0].code == ErrorCode::denied_range);
  }
  SECTION("policy_from_json takes the same options") {
    const json doc = json::parse(loopback);
    CHECK_FALSE(policy_from_json(doc));
    CHECK(policy_from_json(doc, DenyOptions{.allow_loopback = true}));
  }
}

TEST_CASE("policy::policy_from_json reads an already parsed document", "[policy]") {
  SECTION("it agrees with parse_policy") {
    const std::string text = with_entries({"b.example.com", "A.example.com", "10.0.0.0/8:443"});
    auto from_doc = policy_from_json(json::parse(text));
    REQUIRE(from_doc);
    CHECK(*from_doc == policy_of(text));
  }
  SECTION("a non-object is a wrong type at the root") {
    auto r = policy_from_json(json::array());
    REQUIRE_FALSE(r);
    REQUIRE(r.error().size() == 1);
    CHECK(r.error()[0].code == ErrorCode::wrong_type);
    CHECK(r.error()[0].path.empty());
  }
}

TEST_CASE("policy::parse_json_strictly bounds the values of a document before building it", "[policy]") {
  const auto array_of = [](std::size_t n) {
    std::string s = "[";
    for (std::size_t i = 0; i < n; ++i) s += i ? ",{}" : "{}";
    return s + "]";
  };
  // n objects in an array: n + 1 values.
  CHECK(parse_json_strictly(array_of(9), 1 << 20, 10));
  auto over = parse_json_strictly(array_of(10), 1 << 20, 10);
  REQUIRE_FALSE(over);
  CHECK(over.error().code == ErrorCode::too_large);
  CHECK(over.error().message == "JSON with more values than allowed");
  CHECK(parse_json_strictly(R"({"a":[1,2,{"b":null}]})", 1 << 20, 6));  // object, array, 1, 2, object, null
  CHECK_FALSE(parse_json_strictly(R"({"a":[1,2,{"b":null}]})", 1 << 20, 5));
}
