// generate_demo_bank: counts, determinism, obviously fake content, and a
// file that is created once and never overwritten.
#include "demo_data.h"

#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <catch2/catch.hpp>

#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using Catch::Matchers::StartsWith;
using Json = nlohmann::json;
using Kind = DataError::Kind;

namespace {

// A digest of the content, through the read-only source like any client.
std::size_t content_hash(const std::string& path) {
  QueryLimits limits;
  limits.max_rows = 1'000'000;
  limits.max_result_bytes = std::size_t{1} << 30;
  auto src = SqliteSource::open(path, limits);
  REQUIRE(src);
  std::string all;
  for (const char* sql : {"SELECT * FROM customers ORDER BY id", "SELECT * FROM accounts ORDER BY id",
                          "SELECT * FROM cards ORDER BY id",
                          "SELECT * FROM transactions ORDER BY id"}) {
    all += Json(must_query(**src, sql)).dump();
  }
  return std::hash<std::string>{}(all);
}

std::int64_t count(const SqliteSource& src, const std::string& table) {
  return must_query(src, "SELECT count(*) FROM " + table).rows.at(0)[0].get<std::int64_t>();
}

}  // namespace

TEST_CASE("mcpd::generate_demo_bank writes the counts it was asked for", "[mcpd][demo]") {
  const DemoBank bank;
  const auto src = bank.open();

  SECTION("customers and transactions match the options") {
    CHECK(bank.stats.customers == 200);
    CHECK(bank.stats.transactions == 2000);
    CHECK(count(*src, "customers") == 200);
    CHECK(count(*src, "transactions") == 2000);
  }
  SECTION("accounts and cards match the reported stats") {
    CHECK(count(*src, "accounts") == bank.stats.accounts);
    CHECK(count(*src, "cards") == bank.stats.cards);
    CHECK(bank.stats.accounts >= bank.stats.customers);
    CHECK(bank.stats.accounts <= 3 * bank.stats.customers);
  }
  SECTION("every row references an existing parent") {
    CHECK(must_query(*src, "SELECT count(*) FROM accounts WHERE customer_id NOT IN "
                           "(SELECT id FROM customers)")
              .rows.at(0)[0] == 0);
    CHECK(must_query(*src, "SELECT count(*) FROM transactions WHERE account_id NOT IN "
                           "(SELECT id FROM accounts)")
              .rows.at(0)[0] == 0);
  }
  SECTION("no temporary file is left behind") {
    CHECK_FALSE(std::filesystem::exists(bank.path + ".tmp"));
  }
}

TEST_CASE("mcpd::generate_demo_bank is deterministic from the seed", "[mcpd][demo]") {
  const TempDir dir;
  DemoOptions o = small_bank();
  REQUIRE(generate_demo_bank(dir.file("a.db"), o));
  REQUIRE(generate_demo_bank(dir.file("b.db"), o));
  o.seed += 1;
  REQUIRE(generate_demo_bank(dir.file("c.db"), o));

  SECTION("the same seed gives the same content") {
    CHECK(content_hash(dir.file("a.db")) == content_hash(dir.file("b.db")));
  }
  SECTION("another seed gives other content") {
    CHECK(content_hash(dir.file("a.db")) != content_hash(dir.file("c.db")));
  }
}

TEST_CASE("mcpd::generate_demo_bank writes obviously fake data", "[mcpd][demo]") {
  const DemoBank bank;
  const auto src = bank.open();
  const auto all = [&](const std::string& sql) {
    const QueryResult r = must_query(*src, sql);
    REQUIRE_FALSE(r.truncated);
    return r.rows;
  };
  SECTION("e-mail addresses are at example domains only") {
    for (const Json& row : all("SELECT email FROM customers WHERE email IS NOT NULL")) {
      const std::string email = row[0].get<std::string>();
      const bool example = email.ends_with("@example.com") || email.ends_with("@example.org") ||
                           email.ends_with("@example.net");
      CHECK(example);
    }
  }
  SECTION("IBAN-like strings carry the country code XX") {
    for (const Json& row : all("SELECT iban FROM accounts")) {
      CHECK_THAT(row[0].get<std::string>(), StartsWith("XX"));
    }
  }
  SECTION("account kinds are checking, savings or loan") {
    for (const Json& row : all("SELECT DISTINCT kind FROM accounts")) {
      const std::string kind = row[0].get<std::string>();
      CHECK((kind == "checking" || kind == "savings" || kind == "loan"));
    }
  }
  SECTION("the file is a rollback-journal database, not WAL") {
    // Header bytes 18 and 19: file format write/read versions, 1 = legacy.
    const std::string header = read_file(bank.path).substr(0, 100);
    CHECK(header.rfind("SQLite format 3", 0) == 0);
    CHECK(header[18] == 1);
    CHECK(header[19] == 1);
  }
}

TEST_CASE("mcpd::generate_demo_bank refuses to overwrite", "[mcpd][demo]") {
  const TempDir dir;
  const std::string path = dir.file("bank.db");

  SECTION("an existing database is left as it was") {
    REQUIRE(generate_demo_bank(path, small_bank()));
    const Fingerprint before = Fingerprint::of(path);
    auto again = generate_demo_bank(path, small_bank());
    REQUIRE_FALSE(again);
    CHECK(again.error().kind == Kind::denied);
    CHECK(Fingerprint::of(path) == before);
  }
  SECTION("any existing file is left as it was") {
    std::ofstream(path) << "precious";
    REQUIRE_FALSE(generate_demo_bank(path, small_bank()));
    CHECK(read_file(path) == "precious");
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  }
  SECTION("a stale temporary file from a crashed run is replaced") {
    std::ofstream(path + ".tmp") << "half-written";
    REQUIRE(generate_demo_bank(path, small_bank()));
    CHECK_FALSE(std::filesystem::exists(path + ".tmp"));
  }
  SECTION("options out of range are refused and write nothing") {
    DemoOptions o = small_bank();
    o.customers = 0;
    CHECK_FALSE(generate_demo_bank(path, o));
    o.customers = kMaxDemoCustomers + 1;
    CHECK(generate_demo_bank(path, o).error().kind == Kind::too_large);
    CHECK_FALSE(std::filesystem::exists(path));
  }
}
