// The value helpers: UTF-8 repair and base64, as used for result cells.
#include "values.h"

#include <sqlite3.h>

#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>

using namespace sluice::mcpd;

namespace {

std::string b64(const std::string& s) {
  return base64(reinterpret_cast<const unsigned char*>(s.data()), s.size());
}

}  // namespace

TEST_CASE("mcpd::base64 follows RFC 4648", "[mcpd][values]") {
  SECTION("the RFC's test vectors encode as published") {
    CHECK(b64("") == "");
    CHECK(b64("f") == "Zg==");
    CHECK(b64("fo") == "Zm8=");
    CHECK(b64("foo") == "Zm9v");
    CHECK(b64("foob") == "Zm9vYg==");
    CHECK(b64("fooba") == "Zm9vYmE=");
    CHECK(b64("foobar") == "Zm9vYmFy");
  }
  SECTION("high bytes use the + and / alphabet") { CHECK(b64("\xfb\xff") == "+/8="); }
}

TEST_CASE("mcpd::valid_utf8 repairs only what is invalid", "[mcpd][values]") {
  SECTION("valid text, ASCII or not, is unchanged") {
    for (const std::string s : {"", "plain", "caf\xC3\xA9", "\xE2\x82\xAC 5", "\xF0\x9F\x99\x82"}) {
      CHECK(valid_utf8(s) == s);
    }
  }
  SECTION("each invalid byte becomes U+FFFD") {
    CHECK(valid_utf8("a\xFF" "b") == "a\xEF\xBF\xBD" "b");
    CHECK(valid_utf8("\xC3") == "\xEF\xBF\xBD");  // truncated sequence
  }
  SECTION("overlong forms and surrogates are invalid") {
    CHECK(valid_utf8("\xC0\xAF") == "\xEF\xBF\xBD\xEF\xBF\xBD");
    CHECK(valid_utf8("\xED\xA0\x80").find("\xED") == std::string::npos);
    CHECK(valid_utf8("\xF4\x90\x80\x80").find("\xF4") == std::string::npos);  // > U+10FFFF
  }
  SECTION("the repaired text always serialises as JSON") {
    const std::string nasty = "\xC0\xAF\xED\xA0\x80\xFF\xF4\x90\x80\x80 ok";
    CHECK_NOTHROW(nlohmann::json(valid_utf8(nasty)).dump());
  }
}

TEST_CASE("mcpd::cell_floor knows before copying what cell_to_json will count", "[mcpd][values]") {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
  sqlite3_stmt* st = nullptr;
  REQUIRE(sqlite3_prepare_v2(db,
                             "SELECT printf('%.*c', 1000, 'x'), printf('%.*c', 1000, char(1)), "
                             "'a\"b\\\\c', x'00ff10', -9223372036854775807 - 1, -2.2250738585072014e-308, NULL, "
                             "1e999, -1e999",
                             -1, &st, nullptr) == SQLITE_OK);
  REQUIRE(sqlite3_step(st) == SQLITE_ROW);
  for (int col = 0; col < sqlite3_column_count(st); ++col) {
    INFO("column " << col);
    const std::size_t floor = sluice::mcpd::cell_floor(st, col);
    std::size_t counted = 0;
    const nlohmann::json cell = sluice::mcpd::cell_to_json(st, col, counted);
    CHECK(floor <= counted);  // the floor never overshoots
    // The count is at least the cell as written into an answer, escaped twice.
    const std::string once = cell.dump();
    const std::string twice = nlohmann::json(once).dump();
    CHECK(counted >= twice.size() - 2);
  }
  // Infinities are not JSON numbers (a serializer writes them as null,
  // which a client reads as SQL NULL): a marker instead.
  std::size_t ignored = 0;
  CHECK(sluice::mcpd::cell_to_json(st, 7, ignored) == nlohmann::json{{"$float", "Infinity"}});
  CHECK(sluice::mcpd::cell_to_json(st, 8, ignored) == nlohmann::json{{"$float", "-Infinity"}});
  // Without anything to escape, the floor is the count.
  std::size_t plain = 0;
  (void)sluice::mcpd::cell_to_json(st, 0, plain);
  CHECK(sluice::mcpd::cell_floor(st, 0) == plain);
  sqlite3_finalize(st);
  sqlite3_close(db);
}
