#include "text.h"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using sluice::mcpd::clean_text;

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
