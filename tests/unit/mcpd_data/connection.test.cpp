// The hardened connection: one statement at a time, a file that is opened
// but never created or modified, and client messages without the path.
#include "connection.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using Catch::Matchers::Contains;
using Json = nlohmann::json;
using Kind = DataError::Kind;

namespace {

// Statements that must all fail, for every reason there is.
const std::vector<std::string> kHostile = {
    "INSERT INTO customers(full_name) VALUES ('x')",
    "UPDATE accounts SET balance_cents = 0",
    "DELETE FROM transactions",
    "DROP TABLE cards",
    "CREATE TABLE t(x)",
    "ALTER TABLE customers RENAME TO c2",
    "PRAGMA journal_mode=WAL",
    "PRAGMA user_version=9",
    "PRAGMA query_only=0",
    "ATTACH 'x.db' AS x",
    "BEGIN IMMEDIATE",
    "VACUUM",
    "ANALYZE",
    "REINDEX",
    "SELECT load_extension('x')",
    "SELECT * FROM sqlite_schema",
    "SELECT 1; DELETE FROM customers",
    "SELEC 1",
    "SELECT * FROM no_such_table",
    "SELECT no_such_column FROM customers",
    "SELECT \"double-quoted string\"",
};

}  // namespace

TEST_CASE("mcpd::Connection runs exactly one statement", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();
  const auto kind_of = [&](const std::string& sql) {
    auto r = src->query(sql, {});
    return r ? std::string("ok") : std::string(to_string(r.error().kind));
  };

  SECTION("a second statement is refused, whatever it is") {
    CHECK(kind_of("SELECT 1; SELECT 2") == "invalid_sql");
    CHECK(kind_of("SELECT 1;DROP TABLE customers") == "invalid_sql");
    auto r = src->query("SELECT 1; SELECT 2", {});
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "exactly one statement is allowed");
  }
  SECTION("trailing semicolons, whitespace and comments are not statements") {
    CHECK(kind_of("SELECT 1;") == "ok");
    CHECK(kind_of("SELECT 1 ; ;\n  -- done\n") == "ok");
    CHECK(kind_of("SELECT 1; /* a comment */") == "ok");
    CHECK(kind_of("SELECT 1; /* unterminated") == "ok");
  }
  SECTION("an empty statement is invalid") {
    CHECK(kind_of("") == "invalid_sql");
    CHECK(kind_of("  -- only a comment") == "invalid_sql");
    CHECK(kind_of(";") == "invalid_sql");
  }
  SECTION("a NUL byte cannot hide a second statement") {
    CHECK(kind_of(std::string("SELECT 1\0; DELETE FROM customers", 33)) == "invalid_sql");
  }
  SECTION("syntax errors keep SQLite's pointer to the offending token") {
    auto r = src->query("SELEC id FROM customers", {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::invalid_sql);
    CHECK(r.error().message == "near \"SELEC\": syntax error");
  }
  SECTION("double-quoted strings are identifiers, never string literals") {
    auto r = src->query("SELECT id FROM customers WHERE city = \"Paris\"", {});
    REQUIRE_FALSE(r);
    CHECK_THAT(r.error().message, Contains("no such column"));
  }
}

TEST_CASE("mcpd::Connection never modifies the file", "[mcpd][sqlite]") {
  const DemoBank bank;
  const Fingerprint before = Fingerprint::of(bank.path);
  {
    const auto src = bank.open();
    for (const std::string& sql : kHostile) {
      INFO(sql);
      CHECK_FALSE(src->query(sql, {}));
    }
    CHECK(src->describe("customers"));
  }
  SECTION("size, modification time and content are unchanged") {
    const Fingerprint after = Fingerprint::of(bank.path);
    CHECK(after.size == before.size);
    CHECK(after.mtime_ns == before.mtime_ns);
    CHECK(after.content == before.content);
  }
  SECTION("no journal, WAL or other file appeared beside it") {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(bank.dir.path())) {
      names.push_back(e.path().filename().string());
    }
    CHECK(names == std::vector<std::string>{"bank.db"});
  }
}

TEST_CASE("mcpd::Connection opens only existing databases", "[mcpd][sqlite]") {
  const TempDir dir;

  SECTION("a missing file is not_found and is not created") {
    auto src = SqliteSource::open(dir.file("missing.db"), {});
    REQUIRE_FALSE(src);
    CHECK(src.error().kind == Kind::not_found);
    CHECK_FALSE(std::filesystem::exists(dir.file("missing.db")));
  }
  SECTION("a name that looks like a URI is a plain file name") {
    // Read as a URI, this would create created.db.
    auto src = SqliteSource::open("file:" + dir.file("created.db") + "?mode=rwc", {});
    REQUIRE_FALSE(src);
    CHECK_FALSE(std::filesystem::exists(dir.file("created.db")));
  }
  SECTION("a file that is not a database fails without naming the file") {
    std::ofstream(dir.file("notes.txt")) << std::string(4096, 'x');
    auto src = SqliteSource::open(dir.file("notes.txt"), {});
    REQUIRE_FALSE(src);
    CHECK(src.error().message == "data source could not be opened");
    CHECK_THAT(src.error().detail, Contains("notes.txt"));  // the audit log may know
  }
  SECTION("invalid limits are refused") {
    QueryLimits limits;
    limits.pool = 0;
    CHECK_FALSE(SqliteSource::open(dir.file("missing.db"), limits));
  }
}

TEST_CASE("mcpd::Connection keeps the path out of client messages", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();
  for (const std::string& sql : kHostile) {
    auto r = src->query(sql, {});
    REQUIRE_FALSE(r);
    INFO(sql << " -> " << r.error().message);
    CHECK_THAT(r.error().message, !Contains(bank.dir.path()) && !Contains("bank.db"));
  }
  SECTION("nor in the message of a failed open") {
    auto missing = SqliteSource::open(bank.dir.file("gone.db"), {});
    REQUIRE_FALSE(missing);
    CHECK_THAT(missing.error().message, !Contains(bank.dir.path()) && !Contains("gone.db"));
  }
}
