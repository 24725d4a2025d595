// The authorizer: its policy alone, then through a real data source, where
// every refused statement must come back as kind denied with the reason in
// the audit detail and a neutral client message.
#include "authorizer.h"

#include <string>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using Catch::Matchers::Contains;
using Kind = DataError::Kind;

namespace {

// Runs `sql` and requires a denial whose detail contains `why`.
void require_denied(const SqliteSource& src, const std::string& sql, const std::string& why) {
  auto r = src.query(sql, {});
  INFO(sql);
  REQUIRE_FALSE(r);
  INFO(r.error().message << " / " << r.error().detail);
  CHECK(r.error().kind == Kind::denied);
  CHECK(r.error().message == "statement not permitted");
  CHECK_THAT(r.error().detail, Contains(why));
}

}  // namespace

TEST_CASE("mcpd::Authorizer allows only its allowlist", "[mcpd][authorizer]") {
  Authorizer a;
  a.set_names(std::make_shared<Authorizer::NameSet>(Authorizer::NameSet{"customers"}),
              std::make_shared<Authorizer::NameSet>(Authorizer::NameSet{"secrets"}));

  SECTION("SELECT, recursive CTEs and reads of readable tables are allowed") {
    CHECK(a.decide(SQLITE_SELECT, nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(a.decide(SQLITE_RECURSIVE, nullptr, nullptr, nullptr) == SQLITE_OK);
    CHECK(a.decide(SQLITE_READ, "customers", "id", "main") == SQLITE_OK);
    CHECK(a.decide(SQLITE_READ, "Customers", "", nullptr) == SQLITE_OK);
    CHECK(a.denial().empty());
  }
  SECTION("reads of other tables or other schemas are denied") {
    CHECK(a.decide(SQLITE_READ, "sqlite_schema", "sql", "main") == SQLITE_DENY);
    CHECK(a.decide(SQLITE_READ, "customers", "id", "temp") == SQLITE_DENY);
    CHECK(a.decide(SQLITE_READ, "secrets", "id", "main") == SQLITE_DENY);
    CHECK(a.decide(SQLITE_READ, "cte", "x", nullptr) == SQLITE_DENY);
  }
  SECTION("a read of no column may be a CTE, unless it names a hidden table") {
    CHECK(a.decide(SQLITE_READ, "cte", "", nullptr) == SQLITE_OK);
    CHECK(a.decide(SQLITE_READ, "secrets", "", nullptr) == SQLITE_DENY);
    CHECK(a.decide(SQLITE_READ, "sqlite_master", "", nullptr) == SQLITE_DENY);
    CHECK(a.denial() == "denied: read of secrets");
  }
  SECTION("only the first refusal is recorded") {
    a.decide(SQLITE_ATTACH, "x.db", nullptr, nullptr);
    a.decide(SQLITE_PRAGMA, "user_version", nullptr, nullptr);
    CHECK(a.denial() == "denied: ATTACH x.db");
    a.clear_denial();
    CHECK(a.denial().empty());
  }
  SECTION("an action code SQLite may add later is denied") {
    CHECK(a.decide(9999, nullptr, nullptr, nullptr) == SQLITE_DENY);
    CHECK(a.denial() == "denied: action 9999");
  }
  SECTION("functions are allowed by name, case-insensitively") {
    CHECK(a.decide(SQLITE_FUNCTION, nullptr, "LOWER", nullptr) == SQLITE_OK);
    CHECK(Authorizer::function_allowed("count"));
    CHECK(Authorizer::function_allowed("row_number"));
    for (const char* f : {"load_extension", "readfile", "writefile", "edit", "fts3_tokenizer",
                          "randomblob", "zeroblob", "random", "sqlite_version"}) {
      INFO(f);
      CHECK_FALSE(Authorizer::function_allowed(f));
    }
  }
  SECTION("metadata mode adds sqlite_schema reads, table_info and reading schema_version, nothing else") {
    const ModeScope scope(a, Authorizer::Mode::metadata);
    CHECK(a.decide(SQLITE_READ, "sqlite_schema", "name", "main") == SQLITE_OK);
    CHECK(a.decide(SQLITE_PRAGMA, "table_info", "customers", nullptr) == SQLITE_OK);
    CHECK(a.decide(SQLITE_PRAGMA, "schema_version", nullptr, "main") == SQLITE_OK);
    CHECK(a.decide(SQLITE_PRAGMA, "SCHEMA_VERSION", nullptr, nullptr) == SQLITE_OK);
    CHECK(a.decide(SQLITE_PRAGMA, "schema_version", "7", "main") == SQLITE_DENY);  // setting it
    CHECK(a.decide(SQLITE_PRAGMA, "user_version", nullptr, "main") == SQLITE_DENY);
    CHECK(a.decide(SQLITE_PRAGMA, "writable_schema", "1", nullptr) == SQLITE_DENY);
    CHECK(a.decide(SQLITE_FUNCTION, nullptr, "load_extension", nullptr) == SQLITE_DENY);
  }
  SECTION("leaving a metadata scope restores user mode") {
    { const ModeScope scope(a, Authorizer::Mode::metadata); }
    CHECK(a.mode() == Authorizer::Mode::user);
    CHECK(a.decide(SQLITE_PRAGMA, "table_info", "customers", nullptr) == SQLITE_DENY);
    CHECK(a.decide(SQLITE_PRAGMA, "schema_version", nullptr, "main") == SQLITE_DENY);
  }
}

TEST_CASE("mcpd::SqliteSource denies writes and records why", "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();

  SECTION("INSERT, UPDATE, DELETE and REPLACE name the table written") {
    require_denied(*src, "INSERT INTO customers(full_name) VALUES ('x')", "write to customers");
    require_denied(*src, "UPDATE customers SET city = 'x'", "write to customers");
    require_denied(*src, "DELETE FROM transactions", "write to transactions");
    require_denied(*src, "REPLACE INTO cards(id) VALUES (1)", "write to cards");
    require_denied(*src, "WITH x AS (SELECT 1) DELETE FROM accounts", "write to accounts");
  }
  SECTION("CREATE, DROP and ALTER are schema changes") {
    for (const char* sql :
         {"CREATE TABLE t(x)", "CREATE TEMP TABLE t(x)", "CREATE INDEX i ON customers(city)",
          "CREATE VIEW v AS SELECT 1", "CREATE TRIGGER t AFTER INSERT ON cards BEGIN SELECT 1; END",
          "DROP TABLE customers", "DROP INDEX accounts_customer",
          "ALTER TABLE customers ADD COLUMN x", "CREATE VIRTUAL TABLE f USING fts5(x)"}) {
      require_denied(*src, sql, "denied: ");
    }
  }
}

TEST_CASE("mcpd::SqliteSource denies ATTACH and records why", "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();
  SECTION("ATTACH of another file is denied") {
    require_denied(*src, "ATTACH '" + bank.dir.file("other.db") + "' AS o", "denied: ATTACH");
    CHECK_FALSE(std::filesystem::exists(bank.dir.file("other.db")));
  }
  SECTION("ATTACH of an in-memory database is denied too") {
    require_denied(*src, "ATTACH ':memory:' AS m", "denied: ATTACH");
  }
  SECTION("DETACH is denied") { require_denied(*src, "DETACH main", "denied: DETACH"); }
}

TEST_CASE("mcpd::SqliteSource denies every PRAGMA", "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();
  SECTION("pragmas that write are denied") {
    for (const char* sql : {"PRAGMA query_only=0", "PRAGMA writable_schema=1",
                            "PRAGMA journal_mode=WAL", "PRAGMA user_version=7"}) {
      require_denied(*src, sql, "denied: PRAGMA");
    }
  }
  SECTION("pragmas that only read are denied as well") {
    for (const char* sql : {"PRAGMA user_version", "PRAGMA schema_version", "PRAGMA table_info(customers)",
                            "PRAGMA compile_options", "PRAGMA database_list",
                            "PRAGMA integrity_check"}) {
      require_denied(*src, sql, "denied: PRAGMA");
    }
  }
  SECTION("pragma table-valued functions are denied in user queries") {
    require_denied(*src, "SELECT * FROM pragma_table_info('customers')",
                   "denied: PRAGMA function pragma_table_info");
    require_denied(*src, "SELECT count(*) FROM pragma_database_list", "pragma_database_list");
    require_denied(*src, "SELECT name FROM customers, PRAGMA_COMPILE_OPTIONS",
                   "PRAGMA_COMPILE_OPTIONS");
  }
}

TEST_CASE("mcpd::SqliteSource denies functions outside the allowlist",
          "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();
  for (const char* f :
       {"load_extension('/tmp/evil.so')", "readfile('/etc/passwd')", "writefile('/tmp/x', 'y')",
        "edit('x')", "fts3_tokenizer('simple')", "randomblob(1000000)", "zeroblob(1000000)",
        "random()", "sqlite_version()"}) {
    const std::string sql = std::string("SELECT ") + f;
    const std::string name = std::string(f).substr(0, std::string(f).find('('));
    SECTION(name + " is denied") {
      auto r = src->query(sql, {});
      REQUIRE_FALSE(r);
      // readfile, writefile and edit exist only in the sqlite3 shell: here
      // they are unknown, which SQLite reports before asking the authorizer.
      if (r.error().kind == Kind::invalid_sql) {
        CHECK_THAT(r.error().message, Contains("no such function"));
      } else {
        CHECK(r.error().kind == Kind::denied);
        CHECK(r.error().detail == "denied: function " + name);
      }
    }
  }
  SECTION("a denied function is denied inside a subquery too") {
    require_denied(*src, "SELECT (SELECT load_extension('x')) FROM customers",
                   "denied: function load_extension");
  }
}

TEST_CASE("mcpd::SqliteSource denies reads of SQLite's own tables", "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();
  SECTION("the schema table under each of its names is denied") {
    require_denied(*src, "SELECT sql FROM sqlite_schema", "read of sqlite_");
    require_denied(*src, "SELECT sql FROM sqlite_master", "read of sqlite_");
    require_denied(*src, "SELECT count(*) FROM sqlite_master", "read of sqlite_");
    require_denied(*src, "SELECT * FROM sqlite_temp_master", "read of ");
  }
  SECTION("the planner's statistics are denied") {
    require_denied(*src, "SELECT * FROM sqlite_stat1", "read of sqlite_stat1");
  }
  SECTION("virtual tables do not exist for user statements") {
    for (const char* sql : {"SELECT * FROM dbstat", "SELECT * FROM json_each('[1]')",
                            "SELECT * FROM sqlite_stmt"}) {
      auto r = src->query(sql, {});
      INFO(sql);
      REQUIRE_FALSE(r);
      CHECK_THAT(r.error().message, Contains("no such table"));
    }
  }
  SECTION("hiding the read in a CTE or subquery does not help") {
    require_denied(*src, "WITH s AS (SELECT name FROM sqlite_schema) SELECT * FROM s",
                   "read of sqlite_");
    require_denied(*src, "SELECT id FROM customers WHERE id IN (SELECT rowid FROM sqlite_schema)",
                   "read of sqlite_");
  }
}

TEST_CASE("mcpd::SqliteSource denies transaction control and maintenance",
          "[mcpd][sqlite][authorizer]") {
  const DemoBank bank;
  const auto src = bank.open();
  SECTION("transactions and savepoints are denied") {
    require_denied(*src, "BEGIN", "denied: TRANSACTION");
    require_denied(*src, "COMMIT", "denied: TRANSACTION");
    require_denied(*src, "SAVEPOINT s", "denied: SAVEPOINT");
  }
  SECTION("ANALYZE and REINDEX are denied") {
    require_denied(*src, "ANALYZE", "denied: ANALYZE");
    require_denied(*src, "REINDEX", "denied: REINDEX");
  }
  SECTION("VACUUM INTO, which asks no authorizer, is refused as not read-only") {
    require_denied(*src, "VACUUM INTO '" + bank.dir.file("copy.db") + "'", "denied: ");
    CHECK_FALSE(std::filesystem::exists(bank.dir.file("copy.db")));
    require_denied(*src, "VACUUM", "denied: ");
  }
}
