// The hardened connection: one statement at a time, a file that is opened
// but never created or modified, and client messages without the path.
#include "connection.h"

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <catch2/catch.hpp>
#include <sqlite3.h>

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

namespace {

// The default VFS, wrapped to count the temporary files SQLite opens
// (sort runs, temporary tables, statement journals), for as long as it
// is in scope. Connections opened meanwhile use it.
class TempFileCounter {
 public:
  TempFileCounter() {
    base_ = sqlite3_vfs_find(nullptr);
    REQUIRE(base_);
    vfs_ = *base_;
    vfs_.zName = "sluice-temp-counter";
    vfs_.pAppData = this;
    vfs_.xOpen = [](sqlite3_vfs* vfs, sqlite3_filename name, sqlite3_file* file, int flags, int* out) {
      auto* self = static_cast<TempFileCounter*>(vfs->pAppData);
      constexpr int kTemp = SQLITE_OPEN_TEMP_DB | SQLITE_OPEN_TEMP_JOURNAL | SQLITE_OPEN_TRANSIENT_DB |
                            SQLITE_OPEN_SUBJOURNAL;
      if (flags & kTemp) ++self->opened;
      return self->base_->xOpen(self->base_, name, file, flags, out);
    };
    REQUIRE(sqlite3_vfs_register(&vfs_, /*makeDflt=*/1) == SQLITE_OK);
  }
  ~TempFileCounter() {
    sqlite3_vfs_unregister(&vfs_);
    sqlite3_vfs_register(base_, 1);
  }
  TempFileCounter(const TempFileCounter&) = delete;
  TempFileCounter& operator=(const TempFileCounter&) = delete;

  int opened = 0;

 private:
  sqlite3_vfs* base_ = nullptr;
  sqlite3_vfs vfs_{};
};

}  // namespace

TEST_CASE("mcpd::Connection sorts and builds temporary tables in memory, never in files", "[mcpd][sqlite]") {
  const DemoBank bank;
  // 60 000 rows of 200 bytes: 12 MB to sort, well past the 2 MB that
  // SQLite sorts in memory before it spills runs to temporary files.
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "CREATE TABLE wide(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);"
                       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 60000) "
                       "INSERT INTO wide SELECT x, (x * 7919) % 60000, printf('%.200c', 'x') FROM n;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  TempFileCounter counter;
  QueryLimits limits;
  limits.max_result_bytes = 64 << 20;
  limits.max_rows = 100000;
  auto src = SqliteSource::open(bank.path, limits);
  REQUIRE(src);
  for (const char* sql : {"SELECT k, pad FROM wide ORDER BY k",                     // sorter
                          "SELECT count(*) FROM (SELECT DISTINCT pad || k FROM wide)",  // ephemeral table
                          "SELECT k, count(*) FROM wide GROUP BY k || pad ORDER BY 2 DESC LIMIT 1",
                          "WITH RECURSIVE r(x, p) AS (SELECT 1, printf('%.200c', 'y') UNION ALL "
                          "SELECT x + 1, p FROM r WHERE x < 60000) SELECT max(x) FROM (SELECT x, p FROM r ORDER BY p, x)"}) {
    INFO(sql);
    auto r = (*src)->query(sql, {});
    INFO((r ? "" : r.error().detail));
    REQUIRE(r);
  }
  CHECK(counter.opened == 0);
}

TEST_CASE("mcpd::Connection stops a query once SQLite's memory passes the budget", "[mcpd][sqlite]") {
  const DemoBank bank;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db,
                       "CREATE TABLE wide(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);"
                       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 60000) "
                       "INSERT INTO wide SELECT x, (x * 7919) % 60000, printf('%.200c', 'x') || x FROM n;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  QueryLimits limits;
  limits.memory_budget = static_cast<std::size_t>(sqlite3_memory_used()) + (4 << 20);  // 4 MiB to spare
  auto src = SqliteSource::open(bank.path, limits);
  REQUIRE(src);
  for (const char* sql : {"SELECT k, pad FROM wide ORDER BY pad",  // 12 MB to sort before the first row
                          "SELECT count(DISTINCT pad) FROM wide"}) {
    INFO(sql);
    auto r = (*src)->query(sql, {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::too_large);
    CHECK(r.error().message == "query needs too much memory");
  }
  // Statistics too: they count distinct values.
  auto stats = (*src)->describe("wide");
  REQUIRE_FALSE(stats);
  CHECK(stats.error().kind == Kind::too_large);
  // What stops is the query; the memory is given back, and the next one runs.
  CHECK(must_query(**src, "SELECT count(*) FROM wide").rows.at(0)[0] == 60000);
  // With the default budget both run.
  auto roomy = SqliteSource::open(bank.path, QueryLimits{});
  REQUIRE(roomy);
  CHECK(must_query(**roomy, "SELECT count(DISTINCT pad) FROM wide").rows.at(0)[0] == 60000);
  CHECK((*roomy)->describe("wide"));
}
