// The hardened connection: one statement at a time, a file that is opened
// but never created or modified, and client messages without the path.
#include "connection.h"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <sqlite3.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compile_guard.h"
#include "sqlite_source.h"
#include "statement_cache.h"
#include "temp_files.h"
#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using Catch::Matchers::Contains;
using Json = nlohmann::json;
using Kind = DataError::Kind;
using namespace std::chrono_literals;

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
    "EXPLAIN SELECT * FROM customers",
    "EXPLAIN QUERY PLAN SELECT * FROM customers WHERE id = 1",
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

TEST_CASE("mcpd::Connection knows the file it reads by its descriptor, not by its path", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto id_of = [](const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return FileId{st.st_dev, st.st_ino};
  };
  const auto original = id_of(bank.path);
  QueryLimits limits;
  auto c = Connection::open(bank.path, limits, std::chrono::steady_clock::now() + limits.timeout);
  REQUIRE(c);
  CHECK((*c)->file_identity() == original);
  // Another file renamed over the path: the connection still reads, and
  // names, the one it opened.
  REQUIRE(generate_demo_bank(bank.dir.file("next.db"), small_bank()));
  REQUIRE(std::rename(bank.dir.file("next.db").c_str(), bank.path.c_str()) == 0);
  CHECK(id_of(bank.path) != original);
  CHECK((*c)->file_identity() == original);
  // Through a link: the file the link led to.
  REQUIRE(::symlink(bank.path.c_str(), bank.dir.file("link.db").c_str()) == 0);
  auto linked = Connection::open(bank.dir.file("link.db"), limits, std::chrono::steady_clock::now() + limits.timeout);
  REQUIRE(linked);
  CHECK((*linked)->file_identity() == id_of(bank.path));
  // A source's file is what its connections read.
  auto src = SqliteSource::open(bank.dir.file("link.db"), limits);
  REQUIRE(src);
  CHECK((*src)->file() == id_of(bank.path));
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

TEST_CASE("mcpd::Connection tells the caller its SQL error whole and the audit log only its shape",
          "[mcpd][sqlite]") {
  // The log keeps a call's arguments only as a digest; SQLite's messages
  // quote them.
  const DemoBank bank;
  const auto src = bank.open();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"SELECT * FROM customers WHERE full_name = '123-45-6789", "123-45-6789"},
      {"SELECT * FROM customers WHERE full_name = \"John Smith\"", "John Smith"},
      {"SELECT * FROM customers WHERE full_name = Smith1234", "Smith1234"},
      {"SELECT * FROM customers WHERE full_name = 'x' Smith1234 'y'", "Smith1234"},
      {"SELECT * FROM [Smith1234]", "Smith1234"},
      {"SELECT * FROM customers WHERE full_name = `Smith1234", "Smith1234"},
      // SQLite quotes a token without escaping it.
      {"SELECT * FROM customers WHERE full_name = 1 \"123-45-6789\"", "123-45-6789"},
      {"SELECT * FROM customers WHERE full_name = 1 'x\"123-45-6789'", "123-45-6789"},
      {"SELECT * FROM customers WHERE full_name = 1 'x]123-45-6789`'", "123-45-6789"},
  };
  for (const auto& [sql, secret] : cases) {
    auto r = src->query(sql, {});
    REQUIRE_FALSE(r);
    INFO(sql << " -> " << r.error().message << " / " << r.error().detail);
    CHECK(r.error().kind == DataError::Kind::invalid_sql);
    CHECK_THAT(r.error().message, Contains(secret));
    CHECK_THAT(r.error().detail, !Contains(secret));
    CHECK_FALSE(r.error().detail.empty());
  }
}

namespace {

// A table of 60 000 rows of ~200 bytes: 12 MB to sort, far past the 2 MB
// that SQLite sorts at once before it writes runs to temporary files.
void add_wide_table(const std::string& path) {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &db) == SQLITE_OK);
  const int rc = sqlite3_exec(db,
                              "CREATE TABLE wide(id INTEGER PRIMARY KEY, k INTEGER, pad TEXT);"
                              "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 60000) "
                              "INSERT INTO wide SELECT x, (x * 7919) % 60000, printf('%.200c', 'x') || x FROM n;",
                              nullptr, nullptr, nullptr);
  sqlite3_close(db);
  REQUIRE(rc == SQLITE_OK);
}

// Statements that need temporary storage: a sort, DISTINCT and GROUP BY
// (temporary tables), a recursive CTE sorted.
const std::vector<std::string> kTempHungry = {
    "SELECT k, pad FROM wide ORDER BY pad",
    "SELECT count(*) FROM (SELECT DISTINCT pad FROM wide)",
    "SELECT k, count(*) FROM wide GROUP BY pad ORDER BY 2 DESC LIMIT 1",
    "WITH RECURSIVE r(x, p) AS (SELECT 1, printf('%.200c', 'y') UNION ALL SELECT x + 1, p FROM r WHERE x < 60000) "
    "SELECT max(x) FROM (SELECT x, p || x AS q FROM r ORDER BY q)",
};

// Files created in SQLite's temporary directory (sqlite3_temp_directory,
// which the unix VFS looks at first), for as long as this is in scope.
class TempDirWatch {
 public:
  TempDirWatch() {
    fd_ = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    REQUIRE(fd_ >= 0);
    REQUIRE(inotify_add_watch(fd_, dir_.path().c_str(), IN_CREATE) >= 0);
    saved_ = sqlite3_temp_directory;
    sqlite3_temp_directory = sqlite3_mprintf("%s", dir_.path().c_str());
  }
  ~TempDirWatch() {
    sqlite3_free(sqlite3_temp_directory);
    sqlite3_temp_directory = saved_;
    ::close(fd_);
  }
  TempDirWatch(const TempDirWatch&) = delete;
  TempDirWatch& operator=(const TempDirWatch&) = delete;

  int created() const {
    int n = 0;
    alignas(inotify_event) char buf[4096];
    ssize_t got = 0;
    while ((got = ::read(fd_, buf, sizeof buf)) > 0) {
      for (char* p = buf; p < buf + got; p += sizeof(inotify_event) + reinterpret_cast<inotify_event*>(p)->len) ++n;
    }
    return n;
  }

 private:
  TempDir dir_;
  int fd_ = -1;
  char* saved_ = nullptr;
};

}  // namespace

TEST_CASE("mcpd::Connection keeps temporary files (sorts, temporary tables) in memory", "[mcpd][sqlite]") {
  const DemoBank bank;
  add_wide_table(bank.path);
  const TempDirWatch watch;
  SECTION("the watch sees the files of a connection of SQLite's own") {
    sqlite3* db = nullptr;
    REQUIRE(sqlite3_open_v2(bank.path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) == SQLITE_OK);
    for (const std::string& sql : kTempHungry) REQUIRE(sqlite3_exec(db, sql.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
    sqlite3_close(db);
    CHECK(watch.created() >= 3);
  }
  SECTION("a data source's make none, and answer the same") {
    QueryLimits limits;
    limits.max_rows = 100000;
    limits.max_result_bytes = 64 << 20;
    auto src = SqliteSource::open(bank.path, limits);
    REQUIRE(src);
    for (const std::string& sql : kTempHungry) {
      INFO(sql);
      const QueryResult r = must_query(**src, sql);
      REQUIRE_FALSE(r.rows.empty());
    }
    CHECK(must_query(**src, kTempHungry[0]).rows.size() == 60000);
    CHECK(must_query(**src, kTempHungry[1]).rows.at(0)[0] == 60000);
    CHECK(must_query(**src, kTempHungry[3]).rows.at(0)[0] == 60000);
    CHECK(watch.created() == 0);
  }
}

TEST_CASE("mcpd::Connection refuses a query whose temporary files pass the budget", "[mcpd][sqlite]") {
  const DemoBank bank;
  add_wide_table(bank.path);
  QueryLimits limits;
  limits.temp_budget = 4 << 20;
  auto src = SqliteSource::open(bank.path, limits);
  REQUIRE(src);
  for (const std::string& sql : kTempHungry) {
    INFO(sql);
    auto r = (*src)->query(sql, {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::too_large);
    CHECK(r.error().message == "query needs too much memory");
    CHECK(r.error().detail.find("budget of 4 MiB") != std::string::npos);
  }
  // The statements' files went with them: queries that need temporary
  // storage within the budget run, again and again (a leak would add up).
  for (int i = 0; i < 5; ++i) {
    CHECK(must_query(**src, "SELECT count(*) FROM (SELECT DISTINCT pad FROM wide WHERE id <= 20000)").rows.at(0)[0] ==
          20000);
  }
  CHECK(temp_memory_used() == 0);
  src->reset();  // and a connection closed gives back all it held
  CHECK(temp_memory_used() == 0);
}

TEST_CASE("mcpd::Connection refuses a query once all temporary files of the process reach their cap",
          "[mcpd][sqlite]") {
  const DemoBank bank;
  add_wide_table(bank.path);
  auto src = SqliteSource::open(bank.path, QueryLimits{});
  REQUIRE(src);
  const std::string sql = "SELECT count(*) FROM (SELECT DISTINCT pad FROM wide)";
  CHECK(must_query(**src, sql).rows.at(0)[0] == 60000);
  set_temp_memory_cap(1 << 20);
  struct Restore {
    ~Restore() { set_temp_memory_cap(kTempMemoryCap); }
  } restore;
  for (int i = 0; i < 3; ++i) {
    auto r = (*src)->query(sql, {});
    REQUIRE_FALSE(r);
    // Not this query's size: a moment's, to be tried again.
    CHECK(r.error().kind == Kind::timeout);
    CHECK(r.error().message == kTempStorageBusy);
    CHECK(temp_memory_used() == 0);
  }
  // Statistics refused for the same reason are not remembered as failed.
  auto busy = (*src)->describe("wide");
  REQUIRE_FALSE(busy);
  CHECK(busy.error().message == kTempStorageBusy);
  set_temp_memory_cap(kTempMemoryCap);
  CHECK((*src)->describe("wide"));
  src->reset();
  CHECK(temp_memory_used() == 0);
}

namespace {

// A chain of common table expressions, each naming the one before twice:
// SQLite copies a CTE at every mention while it compiles, so compiling
// takes time and memory doubling with each level (NOT MATERIALIZED: 14
// levels about 4 s and 36 MB here before the guard, 16 levels 15 s;
// materialised, 19 levels hold 1 GB).
std::string doubling_ctes(int levels, bool not_materialized) {
  std::string sql = "WITH c0(x) AS (SELECT 1)";
  for (int i = 1; i <= levels; ++i) {
    sql += ", c" + std::to_string(i) + "(x) AS " + (not_materialized ? "NOT MATERIALIZED " : "") +
           "(SELECT a.x FROM c" + std::to_string(i - 1) + " a, c" + std::to_string(i - 1) + " b)";
  }
  return sql + " SELECT count(*) FROM c" + std::to_string(levels);
}

}  // namespace

TEST_CASE("mcpd::Connection stops compiling a statement at the deadline, the cancellation or the memory bound",
          "[mcpd][sqlite][compile]") {
  using Clock = std::chrono::steady_clock;
  REQUIRE(compile_guard_installed());
  const DemoBank bank;
  SECTION("the deadline") {
    QueryLimits limits;
    limits.timeout = 100ms;
    auto src = SqliteSource::open(bank.path, limits);
    REQUIRE(src);
    const auto start = Clock::now();
    auto r = (*src)->query(doubling_ctes(14, true), {});
    const auto took = Clock::now() - start;
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::timeout);
    CHECK(r.error().message == "query exceeded the time limit");
    CHECK(r.error().detail.find("compiling") != std::string::npos);
    CHECK(took < 3s);  // unguarded: about 4 s, then "too many FROM clause terms"
    // The connection is sound after the refused allocation.
    CHECK(must_query(**src, "SELECT count(*) FROM customers").rows.size() == 1);
    // So is the admin's check of a saved query, which compiles too.
    auto checked = (*src)->check(doubling_ctes(14, true), 0);
    REQUIRE_FALSE(checked);
    CHECK(checked.error().kind == Kind::timeout);
  }
  SECTION("the cancellation") {
    QueryLimits limits;
    limits.timeout = 60s;  // only the cancellation can end it
    limits.pool = 1;
    auto src = SqliteSource::open(bank.path, limits);
    REQUIRE(src);
    std::atomic<bool> cancel{false};
    std::thread canceller([&] {
      std::this_thread::sleep_for(100ms);
      cancel = true;
    });
    DataResult<QueryResult> r;
    const auto start = Clock::now();
    {
      const CancelScope scope(&cancel);
      r = (*src)->query(doubling_ctes(14, true), {});
    }
    const auto took = Clock::now() - start;
    canceller.join();
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::cancelled);
    CHECK(took < 3s);
  }
  SECTION("the memory bound") {
    QueryLimits limits;
    limits.timeout = 60s;
    auto src = SqliteSource::open(bank.path, limits);
    REQUIRE(src);
    auto r = (*src)->query(doubling_ctes(19, false), {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::too_large);
    CHECK(r.error().message == "the statement needs too much memory to compile");
    CHECK(sqlite3_memory_used() < (std::int64_t{256} << 20));
    CHECK(must_query(**src, "SELECT 1").rows.size() == 1);
  }
  SECTION("short chains compile and run as before") {
    auto src = SqliteSource::open(bank.path, QueryLimits{});
    REQUIRE(src);
    CHECK(must_query(**src, doubling_ctes(5, false)).rows.at(0)[0] == 1);
  }
}

TEST_CASE("mcpd::Connection bounds what running a statement adds to SQLite's heap, and the column names",
          "[mcpd][sqlite]") {
  const DemoBank bank;
  auto src = SqliteSource::open(bank.path, QueryLimits{});
  REQUIRE(src);
  // A hundred distinct one-MiB values in one row (distinct: SQLite would
  // compute identical constants once): 100 MB held by SQLite while the row
  // is built, whatever the byte cap lets out of it.
  std::string sql = "SELECT ";
  for (int i = 0; i < 100; ++i) sql += (i ? ", " : "") + std::string("printf('%.*c', ") + std::to_string(1000000 + i) + ", 'x')";
  const sqlite3_int64 before = sqlite3_memory_used();
  (void)sqlite3_memory_highwater(1);  // from here (earlier tests went higher)
  auto r = (*src)->query(sql, {});
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == Kind::too_large);
  CHECK(r.error().message == "query needs too much memory");
  CHECK(sqlite3_memory_highwater(0) - before < (sqlite3_int64{80} << 20));  // the 64 MiB bound and a little
  // The connection is fine afterwards.
  CHECK(must_query(**src, "SELECT count(*) FROM customers").rows.at(0)[0] == bank.stats.customers);
  // A long column name is cut; names count against the byte cap.
  const std::string name(5000, 'n');
  auto named = must_query(**src, "SELECT 1 AS \"" + name + "\"");
  REQUIRE(named.columns.size() == 1);
  CHECK(named.columns[0] == name.substr(0, 256));
}

TEST_CASE("mcpd::SqliteSource::describe counts distinct values a column at a time when all at once is too big",
          "[mcpd][sqlite]") {
  const DemoBank bank;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
  // Eight columns of 60 000 distinct ~100-byte values each.
  REQUIRE(sqlite3_exec(db,
                       "CREATE TABLE many(a TEXT, b TEXT, c TEXT, d TEXT, e TEXT, f TEXT, g TEXT, h TEXT);"
                       "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 60000), "
                       "v(x, s) AS (SELECT x, printf('%.100c', 'v') || x FROM n) "
                       "INSERT INTO many SELECT s, s, s, s, s, s, s, s FROM v;",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  for (const std::size_t budget_mib : {6, 1}) {
    INFO("budget " << budget_mib << " MiB");
    QueryLimits limits;
    limits.temp_budget = budget_mib << 20;
    auto src = SqliteSource::open(bank.path, limits);
    REQUIRE(src);
    // All eight distinct sets at once do not fit the budget.
    auto at_once = (*src)->query("SELECT count(DISTINCT a), count(DISTINCT b), count(DISTINCT c), "
                                 "count(DISTINCT d), count(DISTINCT e), count(DISTINCT f), count(DISTINCT g), "
                                 "count(DISTINCT h) FROM many", {});
    REQUIRE_FALSE(at_once);
    CHECK(at_once.error().kind == Kind::too_large);
    auto stats = (*src)->describe("many");
    if (budget_mib == 6) {
      // One at a time does.
      REQUIRE(stats);
      REQUIRE(stats->columns.size() == 8);
      for (const ColumnStats& c : stats->columns) CHECK(c.distinct_count == 60000);
    } else {
      // Not even one: refused, and answered from memory for a while (not
      // computed again, though it would now succeed).
      REQUIRE_FALSE(stats);
      CHECK(stats.error().kind == Kind::too_large);
      REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
      REQUIRE(sqlite3_exec(db, "DELETE FROM many WHERE rowid > 10", nullptr, nullptr, nullptr) == SQLITE_OK);
      sqlite3_close(db);
      CHECK(must_query(**src, "SELECT count(DISTINCT a), count(DISTINCT b) FROM many").rows.at(0)[0] == 10);
      const auto again = (*src)->describe("many");
      REQUIRE_FALSE(again);
      CHECK(again.error().kind == Kind::too_large);
    }
  }
}

TEST_CASE("mcpd::SqliteSource refuses a file that carries sluice-mcpd's application_id", "[mcpd][sqlite]") {
  const DemoBank bank;
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
  const std::string mark = "PRAGMA application_id=" + std::to_string(kMcpdApplicationId);
  REQUIRE(sqlite3_exec(db, mark.c_str(), nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  auto src = SqliteSource::open(bank.path, QueryLimits{});
  REQUIRE_FALSE(src);
  CHECK(src.error().kind == Kind::denied);
  CHECK(src.error().message == "data source could not be opened");
  CHECK_THAT(src.error().detail, Contains("sluice-mcpd's own database"));
  // Any other application_id is the file's own business.
  REQUIRE(sqlite3_open(bank.path.c_str(), &db) == SQLITE_OK);
  REQUIRE(sqlite3_exec(db, "PRAGMA application_id=7", nullptr, nullptr, nullptr) == SQLITE_OK);
  sqlite3_close(db);
  CHECK(SqliteSource::open(bank.path, QueryLimits{}));
}

TEST_CASE("mcpd::StatementCache holds its statements to a byte budget, least recently used out first",
          "[mcpd][sqlite][memory]") {
  sqlite3* db = nullptr;
  REQUIRE(sqlite3_open(":memory:", &db) == SQLITE_OK);
  const auto prepare = [db](const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    REQUIRE(sqlite3_prepare_v2(db, sql.c_str(), -1, &s, nullptr) == SQLITE_OK);
    return s;
  };
  {
    // A statement with a long list of terms takes tens of KB compiled.
    const auto wide = [](int n) {
      std::string sql = "SELECT " + std::to_string(n);
      for (int i = 0; i < 400; ++i) sql += "+" + std::to_string(i);
      return sql;
    };
    sqlite3_stmt* measured = prepare(wide(-1));
    const int one = sqlite3_stmt_status(measured, SQLITE_STMTSTATUS_MEMUSED, 0);
    sqlite3_finalize(measured);
    REQUIRE(one > 4096);
    StatementCache cache(64, static_cast<std::size_t>(one) * 3);
    for (int i = 0; i < 10; ++i) cache.insert(wide(i), prepare(wide(i)));
    CHECK(cache.size() <= 3);
    CHECK(cache.size() >= 2);
    CHECK(cache.bytes() <= static_cast<std::size_t>(one) * 3 + 64 * 1024);
    CHECK(cache.find(wide(9)) != nullptr);  // the newest stays
    CHECK(cache.find(wide(0)) == nullptr);
    // One statement over the whole budget is still kept, alone.
    StatementCache tiny(64, 16);
    tiny.insert(wide(1), prepare(wide(1)));
    tiny.insert(wide(2), prepare(wide(2)));
    CHECK(tiny.size() == 1);
    CHECK(tiny.find(wide(2)) != nullptr);
  }
  CHECK(sqlite3_close(db) == SQLITE_OK);  // every statement finalized
}
