#include "text.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using sluice::mcpd::clean_text;
using sluice::mcpd::kMaxJsonDepth;
using sluice::mcpd::kMaxJsonValues;
using sluice::mcpd::parse_json;

TEST_CASE("mcpd::clean_text makes untrusted text valid UTF-8 within a byte budget", "[mcpd][text]") {
  SECTION("valid text passes unchanged") {
    CHECK(clean_text("curl/8.0 é ✓ 😀", 100) == "curl/8.0 é ✓ 😀");
  }
  SECTION("invalid bytes become U+FFFD, and the result always serialises") {
    for (const std::string& bad : {std::string("\xff"), std::string("a\xc3"), std::string("\xe2\x82"),
                                  std::string("\xc0\xaf"), std::string("\xed\xa0\x80"), std::string("\xf4\x90\x80\x80")}) {
      const std::string out = clean_text(bad, 64);
      CHECK(out.find("\xEF\xBF\xBD") != std::string::npos);
      CHECK_NOTHROW(nlohmann::json(out).dump());
    }
  }
  SECTION("the cut never splits a character") {
    CHECK(clean_text("ééé", 5) == "éé");
    CHECK(clean_text("😀😀", 7) == "😀");
    CHECK(clean_text("abc", 0).empty());
  }
}

TEST_CASE("mcpd::append_json_string writes what a JSON parser reads back", "[mcpd][text]") {
  using sluice::mcpd::append_json_string;
  const auto round_trip = [](const std::string& s) {
    std::string out;
    append_json_string(out, s);
    return nlohmann::json::parse(out).get<std::string>();
  };
  SECTION("plain, escaped and control characters survive exactly") {
    for (const std::string& s : {std::string(""), std::string("plain"), std::string("q\"b\\s/"),
                                 std::string("\b\f\n\r\t"), std::string("\x01\x1f\x7f", 3),
                                 std::string("nul\0in", 6), std::string("é ✓ 😀")}) {
      CHECK(round_trip(s) == s);
    }
  }
  SECTION("the same text as nlohmann's own serialiser for valid input") {
    const std::string s = "a\"b\\c\n\x02 é";
    std::string out;
    append_json_string(out, s);
    CHECK(out == nlohmann::json(s).dump());
  }
  SECTION("invalid UTF-8 becomes U+FFFD and the text still parses") {
    for (const std::string& bad : {std::string("\xff"), std::string("a\xc3"), std::string("\xed\xa0\x80"),
                                   std::string("\xc0\xaf"), std::string("\xf4\x90\x80\x80")}) {
      const std::string back = round_trip(bad);
      CHECK(back.find("\xEF\xBF\xBD") != std::string::npos);
    }
  }
}

TEST_CASE("mcpd::JsonObject writes compact objects", "[mcpd][text]") {
  std::string out;
  sluice::mcpd::JsonObject(out).str("a", "x\"y").num("n", -42).boolean("b", true).raw("r", "[1,{}]").close();
  CHECK(out == R"({"a":"x\"y","n":-42,"b":true,"r":[1,{}]})");
  const auto j = nlohmann::json::parse(out);
  CHECK(j["a"] == "x\"y");
}

TEST_CASE("mcpd::parse_json refuses JSON nested past kMaxJsonDepth before building it", "[mcpd][text]") {
  const auto nested = [](int depth, const std::string& inside = "") {
    std::string t;
    for (int i = 0; i < depth; ++i) t += i % 2 ? "{\"k\":" : "[";
    t += inside.empty() ? "1" : inside;
    for (int i = depth - 1; i >= 0; --i) t += i % 2 ? "}" : "]";
    return t;
  };
  REQUIRE(parse_json(nested(kMaxJsonDepth)));
  auto deep = parse_json(nested(kMaxJsonDepth + 1));
  REQUIRE_FALSE(deep);
  CHECK(deep.error().what == "JSON nested deeper than 64 levels");
  // Brackets inside strings, escaped quotes included, are text.
  auto text = parse_json(nested(kMaxJsonDepth, "\"[[[{{{\\\"]]]\""));
  REQUIRE(text);
  CHECK_FALSE(parse_json("{\"a\":"));
  CHECK(parse_json("{\"a\":").error().what == "not JSON");
  CHECK(parse_json(R"({"a":[1,"]"],"b":"\\"})")->at("b") == "\\");
  // A million levels: refused at once, never built.
  CHECK_FALSE(parse_json(std::string(1000000, '[') + std::string(1000000, ']')));
}

TEST_CASE("mcpd::parse_json refuses JSON of more than kMaxJsonValues values before building it", "[mcpd][text]") {
  // n empty objects in an array: n + 1 values.
  const auto objects = [](std::size_t n) {
    std::string s = "[";
    for (std::size_t i = 0; i < n; ++i) s += i ? ",{}" : "{}";
    return s + "]";
  };
  REQUIRE(parse_json(objects(kMaxJsonValues - 1)));
  REQUIRE(parse_json("{\"a\": [ ], \"b\": { }, \"c\": [1, [2, 3]]}"));  // 7 values, empty containers too
  auto many = parse_json(objects(kMaxJsonValues));
  REQUIRE_FALSE(many);
  CHECK(many.error().what == "JSON with more than 100000 values");
  // Commas inside strings are text.
  REQUIRE(parse_json("[\"" + std::string(kMaxJsonValues * 2, ',') + "\"]"));
}
