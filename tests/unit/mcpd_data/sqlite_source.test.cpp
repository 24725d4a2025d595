// SqliteSource as a client sees it: results, parameters, caps, deadlines
// and concurrent use, on a small demo bank.
#include "sqlite_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <fstream>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <sqlite3.h>

#include "connection.h"
#include "sqlite_files.h"
#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using namespace std::chrono_literals;
using Catch::Matchers::Contains;
using Json = nlohmann::json;
using Kind = DataError::Kind;

TEST_CASE("mcpd::SqliteSource runs a SELECT and returns typed cells", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();

  SECTION("columns are named as selected and rows are JSON arrays") {
    const QueryResult r =
        must_query(*src, "SELECT id, full_name AS name FROM customers ORDER BY id LIMIT 3");
    CHECK(r.columns == std::vector<std::string>{"id", "name"});
    REQUIRE(r.rows.size() == 3);
    CHECK(r.rows[0].is_array());
    CHECK(r.rows[0][0] == 1);
    CHECK(r.rows[0][1].is_string());
    CHECK_FALSE(r.truncated);
  }
  SECTION("NULL, integer, float and text cells keep their type") {
    const QueryResult r = must_query(*src, "SELECT NULL, 42, 1.5, 'text'");
    CHECK(r.rows.at(0) == Json::parse(R"([null, 42, 1.5, "text"])"));
  }
  SECTION("a BLOB is an object holding its base64") {
    const QueryResult r = must_query(*src, "SELECT x'00ff10', x''");
    CHECK(r.rows.at(0)[0] == Json{{"$blob_base64", "AP8Q"}});
    CHECK(r.rows.at(0)[1] == Json{{"$blob_base64", ""}});
  }
  SECTION("text that is not UTF-8 is repaired so the result always serialises") {
    const QueryResult r = must_query(*src, "SELECT CAST(x'41ff42' AS TEXT)");
    CHECK(r.rows.at(0)[0] == "A\xEF\xBF\xBD" "B");
    CHECK_NOTHROW(Json(r).dump());
  }
  SECTION("allowlisted functions, window functions and recursive CTEs work") {
    const QueryResult r = must_query(
        *src,
        "WITH RECURSIVE n(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM n WHERE x < 5) "
        "SELECT x, row_number() OVER (ORDER BY x DESC), upper(printf('%d', x)) FROM n "
        "ORDER BY x");
    REQUIRE(r.rows.size() == 5);
    CHECK(r.rows[0] == Json::parse(R"([1, 5, "1"])"));
  }
  SECTION("a join over the demo schema works") {
    const QueryResult r = must_query(
        *src,
        "SELECT count(*) FROM transactions t JOIN accounts a ON a.id = t.account_id "
        "JOIN customers c ON c.id = a.customer_id");
    CHECK(r.rows.at(0)[0] == bank.stats.transactions);
  }
}

TEST_CASE("mcpd::SqliteSource binds parameters instead of splicing them", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();

  SECTION("a point lookup finds the row by its bound key") {
    const QueryResult r = must_query(*src, "SELECT id FROM customers WHERE id = ?", {Json(17)});
    CHECK(r.rows == std::vector<Json>{Json::array({17})});
  }
  SECTION("an injection-looking string is only a value: no rows, nothing executed") {
    for (const char* evil : {"1 OR 1=1", "x' OR '1'='1", "1; DROP TABLE customers; --"}) {
      INFO(evil);
      const QueryResult r =
          must_query(*src, "SELECT id FROM customers WHERE full_name = ?", {Json(evil)});
      CHECK(r.rows.empty());
    }
    CHECK(must_query(*src, "SELECT count(*) FROM customers").rows.at(0)[0] ==
          bank.stats.customers);
  }
  SECTION("null, booleans, integers, floats and strings are bound") {
    const QueryResult r = must_query(*src, "SELECT ?, ?, ?, ?, ?, ?",
                                     {Json(nullptr), Json(true), Json(false), Json(-5),
                                      Json(2.25), Json("it's")});
    CHECK(r.rows.at(0) == Json::parse(R"([null, 1, 0, -5, 2.25, "it's"])"));
  }
  SECTION("a parameter may be reused by number") {
    const QueryResult r = must_query(*src, "SELECT ?1 + ?1", {Json(4)});
    CHECK(r.rows.at(0)[0] == 8);
  }
}

TEST_CASE("mcpd::SqliteSource checks parameters against the statement", "[mcpd][sqlite]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.max_params = 4;
  const auto src = bank.open(limits);
  const auto fails = [&](std::string_view sql, std::vector<Json> params, Kind kind) {
    auto r = src->query(sql, params);
    INFO(sql);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == kind);
    return r.error().message;
  };

  SECTION("too few or too many parameters is an error naming both counts") {
    CHECK_THAT(fails("SELECT ?, ?", {Json(1)}, Kind::invalid_sql), Contains("2") && Contains("1"));
    CHECK_THAT(fails("SELECT 1", {Json(1)}, Kind::invalid_sql), Contains("0"));
  }
  SECTION("objects and arrays are not parameters") {
    CHECK_THAT(fails("SELECT ?", {Json::object({{"a", 1}})}, Kind::invalid_sql),
               Contains("object"));
    CHECK_THAT(fails("SELECT ?", {Json::array({1, 2})}, Kind::invalid_sql), Contains("array"));
  }
  SECTION("an unsigned integer beyond the 64-bit signed range is refused") {
    fails("SELECT ?", {Json(std::uint64_t{1} << 63)}, Kind::invalid_sql);
  }
  SECTION("named parameters are refused: binding is by position only") {
    CHECK_THAT(fails("SELECT :id", {Json(1)}, Kind::invalid_sql), Contains("positional"));
    fails("SELECT @id, $x", {Json(1), Json(2)}, Kind::invalid_sql);
  }
  SECTION("more parameters than the limit is too large") {
    fails("SELECT ?, ?, ?, ?, ?", std::vector<Json>(5, Json(1)), Kind::too_large);
  }
}

TEST_CASE("mcpd::SqliteSource stops a runaway query at the deadline", "[mcpd][sqlite]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.timeout = 100ms;
  limits.pool = 1;
  const auto src = bank.open(limits);

  for (const char* sql :
       {"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c",
        "SELECT count(*) FROM transactions a, transactions b, transactions c",
        // One function call, one VM step, minutes of work: the progress
        // handler alone would not stop these until they ended.
        "WITH a(s, n) AS (SELECT printf('%.*c', 1000000, 'a'), printf('%.*c', 500000, 'a') || 'b') "
        "SELECT instr(s, n), instr(s, n) FROM a",
        "WITH a(s, p) AS (SELECT printf('%.*c', 1000000, 'a'), printf('%.*c', 500000, 'a') || 'b') "
        "SELECT length(replace(s, p, 'x')) FROM a",
        "WITH a(s, c) AS (SELECT printf('%.*c', 1000000, 'a'), printf('%.*c', 999999, 'b') || 'a') "
        "SELECT length(trim(s, c)) FROM a"}) {
    SECTION(std::string("it is interrupted with kind timeout: ") + sql) {
      const auto start = std::chrono::steady_clock::now();
      auto r = src->query(sql, {});
      const auto elapsed = std::chrono::steady_clock::now() - start;
      REQUIRE_FALSE(r);
      CHECK(r.error().kind == Kind::timeout);
      CHECK(r.error().message == "query exceeded the time limit");
      CHECK(elapsed >= 100ms);
      CHECK(elapsed < 2s);
      AND_THEN("the connection answers the next query") {
        CHECK(must_query(*src, "SELECT 1").rows.size() == 1);
      }
    }
  }
}

// A file of 100 MB in one table: SQLite's count(*) walks every page of it
// in one VM instruction, without calling the progress handler and, once
// its pages are cached, without allocating, so neither of those checks
// sees a deadline or a cancellation pass.
struct WideTable {
  TempDir dir;
  std::string path = dir.file("wide.db");
  WideTable() {
    sluice::testing::exec_sql(path, "CREATE TABLE wide(b BLOB); WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL "
                                    "SELECT i + 1 FROM n WHERE i < 100000) INSERT INTO wide SELECT randomblob(1000) FROM n");
  }
  // Eighty walks of the whole table, seconds of work, in a few hundred VM
  // instructions, run under `timeout` and cancelled after `cancel_after`
  // if given; the answer and how long it took. The connection answers a
  // query after it: the interruption is spent.
  std::pair<DataResult<QueryResult>, std::chrono::steady_clock::duration> counts(
      std::chrono::milliseconds timeout, std::optional<std::chrono::milliseconds> cancel_after) const {
    std::string sql = "SELECT 0";
    for (int i = 0; i < 80; ++i) sql += ", (SELECT count(*) FROM wide)";
    QueryLimits limits;
    limits.timeout = timeout;
    limits.pool = 1;
    auto src = SqliteSource::open(path, limits);
    REQUIRE(src);
    std::atomic<bool> cancel{false};
    std::thread canceller([&] {
      if (!cancel_after) return;
      std::this_thread::sleep_for(*cancel_after);
      cancel = true;
    });
    DataResult<QueryResult> r;
    const auto start = std::chrono::steady_clock::now();
    {
      const CancelScope scope(&cancel);
      r = (*src)->query(sql, {});
    }
    const auto elapsed = std::chrono::steady_clock::now() - start;
    canceller.join();
    CHECK(must_query(**src, "SELECT 1").rows.size() == 1);
    return {std::move(r), elapsed};
  }
};

TEST_CASE("mcpd::SqliteSource stops a statement that never calls back, at the deadline or cancelled",
          "[mcpd][sqlite][cancel]") {
  const WideTable wide;
  // Without the watchdog, an allocation noticed either some 40 walks later (1.4-1.8 s).
  SECTION("the deadline") {
    const auto [r, elapsed] = wide.counts(50ms, std::nullopt);
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::timeout);
    CHECK(elapsed < 500ms);
  }
  SECTION("the cancellation") {
    const auto [r, elapsed] = wide.counts(60s, 50ms);  // only the cancellation can end it
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::cancelled);
    CHECK(elapsed < 500ms);
  }
}

TEST_CASE("mcpd::SqliteSource never blocks on a FIFO at its file's path or its journal's", "[mcpd][sqlite]") {
  // A loader's FIFO would block open(2) for good, out of reach of every
  // deadline. Should it block, a writer opening the FIFO after 3 s lets
  // it go: the test then fails on the time rather than hanging.
  const DemoBank bank;
  QueryLimits limits;
  limits.timeout = 500ms;
  limits.pool = 1;
  const auto timed = [](const std::string& fifo, const auto& f) {
    std::atomic<bool> done{false};
    std::thread rescue([&] {
      for (int i = 0; i < 300 && !done; ++i) std::this_thread::sleep_for(10ms);
      if (done) return;
      const int fd = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
      if (fd >= 0) ::close(fd);
    });
    const auto start = std::chrono::steady_clock::now();
    f();
    const auto elapsed = std::chrono::steady_clock::now() - start;
    done = true;
    rescue.join();
    return elapsed;
  };
  SECTION("at the journal's path, once the source is open") {
    const auto src = bank.open(limits);
    const std::string fifo = bank.path + "-journal";
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    DataResult<QueryResult> r;
    CHECK(timed(fifo, [&] { r = src->query("SELECT count(*) FROM customers", {}); }) < 2s);
    REQUIRE_FALSE(r);
    CHECK(r.error().message.find(bank.dir.path()) == std::string::npos);
    REQUIRE(::unlink(fifo.c_str()) == 0);
    CHECK(must_query(*src, "SELECT count(*) FROM customers").rows.size() == 1);
  }
  SECTION("at the file's path") {
    const std::string fifo = bank.dir.file("fifo.db");
    REQUIRE(::mkfifo(fifo.c_str(), 0600) == 0);
    DataResult<std::unique_ptr<SqliteSource>> opened;
    CHECK(timed(fifo, [&] { opened = SqliteSource::open(fifo, limits); }) < 2s);
    CHECK_FALSE(opened);
  }
}

TEST_CASE("mcpd::SqliteSource reads no WAL that is another file's (a hard link beside its file)", "[mcpd][sqlite]") {
  const TempDir dir;
  const std::string victim = dir.file("victim.db"), tenant = dir.file("tenant.db");
  // The victim's pages stay in its WAL while its writer is open.
  sqlite3* writer = nullptr;
  REQUIRE(sqlite3_open(victim.c_str(), &writer) == SQLITE_OK);
  struct Close {
    sqlite3* db;
    ~Close() { sqlite3_close(db); }
  } close_writer{writer};
  REQUIRE(sqlite3_exec(writer,
                       "PRAGMA journal_mode=WAL; PRAGMA wal_autocheckpoint=0;"
                       "CREATE TABLE secrets(v TEXT); INSERT INTO secrets VALUES ('victim-secret-key');",
                       nullptr, nullptr, nullptr) == SQLITE_OK);
  sluice::testing::exec_sql(tenant, "PRAGMA journal_mode=WAL; CREATE TABLE mine(x); INSERT INTO mine VALUES (1);");
  QueryLimits limits;
  limits.pool = 1;
  SECTION("nor a WAL index: SQLite would truncate the one another connection maps") {
    struct stat before {};
    REQUIRE(::stat((victim + "-shm").c_str(), &before) == 0);
    REQUIRE(::link((victim + "-shm").c_str(), (tenant + "-shm").c_str()) == 0);
    auto src = SqliteSource::open(tenant, limits);
    if (src) (void)(*src)->query("SELECT x FROM mine", {});
    struct stat after {};
    REQUIRE(::stat((victim + "-shm").c_str(), &after) == 0);
    CHECK(after.st_size == before.st_size);
    REQUIRE(::unlink((tenant + "-shm").c_str()) == 0);
    // The victim's connection goes on (a truncated index it maps would be a SIGBUS).
    CHECK(sqlite3_exec(writer, "INSERT INTO secrets VALUES ('more')", nullptr, nullptr, nullptr) == SQLITE_OK);
    return;
  }
  REQUIRE(::link((victim + "-wal").c_str(), (tenant + "-wal").c_str()) == 0);
  auto src = SqliteSource::open(tenant, limits);
  if (src) {
    auto r = (*src)->query("SELECT v FROM secrets", {});
    if (r) CHECK(Json(r->rows).dump().find("victim-secret-key") == std::string::npos);
    auto entities = (*src)->entities();
    if (entities) {
      for (const EntityInfo& e : *entities) CHECK(e.name != "secrets");
    }
  }
  // And with the link gone, the tenant's own file reads as it is.
  REQUIRE(::unlink((tenant + "-wal").c_str()) == 0);
  auto again = SqliteSource::open(tenant, limits);
  REQUIRE(again);
  CHECK(must_query(**again, "SELECT x FROM mine").rows.size() == 1);
}

TEST_CASE("mcpd::SqliteSource::file_within_directory keeps a path to a file in its own directory",
          "[mcpd][sqlite]") {
  const TempDir dir;
  const auto id = [](const std::string& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return SqliteSource::FileId{st.st_dev, st.st_ino};
  };
  const SqliteSource::FileId none{};
  std::ofstream(dir.file("data.db")) << "x";
  REQUIRE(::mkdir(dir.file("sub").c_str(), 0700) == 0);
  std::ofstream(dir.file("sub/inner.db")) << "y";
  CHECK(SqliteSource::file_within_directory(dir.file("data.db")) == id(dir.file("data.db")));
  // Links naming a file beside them, even in a chain, lead to it.
  REQUIRE(::symlink("data.db", dir.file("b").c_str()) == 0);
  REQUIRE(::symlink("b", dir.file("a").c_str()) == 0);
  CHECK(SqliteSource::file_within_directory(dir.file("a")) == id(dir.file("data.db")));
  // Anything else is nothing.
  REQUIRE(::symlink(dir.file("data.db").c_str(), dir.file("absolute").c_str()) == 0);
  REQUIRE(::symlink("./data.db", dir.file("dotted").c_str()) == 0);
  REQUIRE(::symlink("sub/inner.db", dir.file("deeper").c_str()) == 0);
  REQUIRE(::symlink("..", dir.file("up").c_str()) == 0);
  REQUIRE(::symlink("missing.db", dir.file("dangling").c_str()) == 0);
  REQUIRE(::symlink("sub", dir.file("linkdir").c_str()) == 0);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(::symlink(i == 9 ? "data.db" : ("hop" + std::to_string(i + 1)).c_str(),
                      dir.file("hop" + std::to_string(i)).c_str()) == 0);
  }
  for (const std::string& path :
       {dir.file("absolute"), dir.file("dotted"), dir.file("deeper"), dir.file("up"), dir.file("dangling"),
        dir.file("linkdir/inner.db"), dir.file("sub/../data.db"), dir.path() + "/./data.db", dir.path() + "//data.db",
        dir.file("sub"), dir.file("hop0"), dir.file("hop1"), std::string("data.db"), dir.file("missing.db"), dir.path() + "/"}) {
    INFO(path);
    CHECK(SqliteSource::file_within_directory(path) == none);
  }
  CHECK(SqliteSource::file_within_directory(dir.file("hop2")) == id(dir.file("data.db")));  // 8 links, then the file
  CHECK(SqliteSource::directory_is_real(dir.file("missing.db")));
  CHECK_FALSE(SqliteSource::directory_is_real(dir.file("linkdir/inner.db")));
  CHECK_FALSE(SqliteSource::directory_is_real("relative/x.db"));
}

TEST_CASE("mcpd::SqliteSource opens a locked file under one deadline, not one per connection", "[mcpd][sqlite]") {
  const DemoBank bank;
  // A loader holds the file's lock: a connection's first read waits for it.
  sqlite3* writer = nullptr;
  REQUIRE(sqlite3_open(bank.path.c_str(), &writer) == SQLITE_OK);
  REQUIRE(sqlite3_exec(writer, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr) == SQLITE_OK);
  QueryLimits limits;
  limits.timeout = 10s;
  // The deadline a connection is opened under is the one it waits until,
  // not the query timeout from its own start (SqliteSource::open gives
  // every pooled connection, and the schema read, the same one).
  const auto start = std::chrono::steady_clock::now();
  auto c = Connection::open(bank.path, limits, start + 300ms);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  REQUIRE_FALSE(c);
  CHECK(c.error().kind == Kind::timeout);
  CHECK(c.error().message == "data source busy");
  CHECK(elapsed >= 300ms);
  CHECK(elapsed < 3s);
  sqlite3_exec(writer, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(writer);
  CHECK(SqliteSource::open(bank.path, limits));  // the lock gone, it opens
}

TEST_CASE("mcpd::SqliteSource refuses a LIKE or GLOB whose match could outlast the deadline",
          "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();
  for (const char* op : {"LIKE", "GLOB"}) {
    INFO(op);
    const std::string sql = std::string("WITH a(s) AS (SELECT printf('%.*c', 1000000, 'a')) SELECT s ") + op +
                            " ('*%' || printf('%.*c', 996, 'a') || 'b') FROM a";
    auto r = src->query(sql, {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::invalid_sql);
    CHECK(r.error().message == "LIKE or GLOB pattern too costly for a value this long");
  }
  // Ordinary patterns on ordinary values match as SQLite's do: case-insensitively.
  const auto count = [&](const char* sql) { return must_query(*src, sql).rows.at(0)[0].get<std::int64_t>(); };
  const std::int64_t like = count("SELECT count(*) FROM customers WHERE full_name LIKE 'a%'");
  CHECK(like > 0);
  CHECK(like == count("SELECT count(*) FROM customers WHERE lower(substr(full_name, 1, 1)) = 'a'"));
  CHECK(count("SELECT count(*) FROM customers WHERE full_name GLOB '[Aa]*'") == like);
}

TEST_CASE("mcpd::SqliteSource truncates at the row and size caps", "[mcpd][sqlite]") {
  const DemoBank bank;

  SECTION("at most max_rows rows come back, flagged as truncated") {
    QueryLimits limits;
    limits.max_rows = 10;
    const auto src = bank.open(limits);
    const QueryResult r = must_query(*src, "SELECT id FROM transactions");
    CHECK(r.rows.size() == 10);
    CHECK(r.truncated);
  }
  SECTION("exactly max_rows rows is complete, not truncated") {
    QueryLimits limits;
    limits.max_rows = 10;
    const auto src = bank.open(limits);
    const QueryResult r = must_query(*src, "SELECT id FROM transactions LIMIT 10");
    CHECK(r.rows.size() == 10);
    CHECK_FALSE(r.truncated);
  }
  SECTION("rows stop before the result exceeds max_result_bytes") {
    QueryLimits limits;
    limits.max_result_bytes = 4096;
    const auto src = bank.open(limits);
    const QueryResult r = must_query(*src, "SELECT full_name, email FROM customers");
    CHECK(r.truncated);
    CHECK(r.rows.size() > 10);
    CHECK(r.rows.size() < static_cast<std::size_t>(bank.stats.customers));
  }
  SECTION("a row too big for the cap is cut before it is copied, and escaping counts") {
    const auto src = bank.open();  // 4 MiB
    // 48 one-MiB values in one row: SQLite holds them; the fifth cell's
    // floor (cell_floor, tested in values.test.cpp) stops the copying.
    std::string wide = "WITH a(s) AS (SELECT printf('%.*c', 1000000, 'x')) SELECT 1";
    for (int i = 0; i < 48; ++i) wide += ", s";
    wide += " FROM a";
    QueryResult r = must_query(*src, wide);
    CHECK(r.truncated);
    CHECK(r.rows.empty());
    // 700 kB of control characters: 4.9 MB once escaped twice into an answer.
    r = must_query(*src, "SELECT printf('%.*c', 700000, char(1))");
    CHECK(r.truncated);
    CHECK(r.rows.empty());
    r = must_query(*src, "SELECT printf('%.*c', 700000, 'x')");  // the same length of letters fits
    CHECK_FALSE(r.truncated);
    CHECK(r.rows.size() == 1);
  }
  SECTION("a value longer than the length limit is too large") {
    const auto src = bank.open();
    // 1.2 MB from a 600 kB string: over the 1 MiB value limit.
    auto r = src->query("SELECT replace(printf('%.*c', 600000, 'x'), 'x', 'yy')", {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::too_large);
  }
  SECTION("SQL longer than max_sql_bytes is too large") {
    QueryLimits limits;
    limits.max_sql_bytes = 2048;
    const auto src = bank.open(limits);
    auto r = src->query("SELECT 1 " + std::string(3000, ' '), {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::too_large);
  }
}

TEST_CASE("mcpd::SqliteSource reuses prepared statements correctly", "[mcpd][sqlite]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.pool = 1;  // every query on the same connection and cache
  const auto src = bank.open(limits);

  SECTION("the same statement with new parameters gives the new answer") {
    for (int id = 1; id <= 5; ++id) {
      const QueryResult r = must_query(*src, "SELECT id FROM customers WHERE id = ?", {Json(id)});
      CHECK(r.rows.at(0)[0] == id);
    }
  }
  SECTION("a statement that failed at run time can run again") {
    auto bad = src->query("SELECT abs(?)", {Json(INT64_MIN)});
    REQUIRE_FALSE(bad);  // integer overflow
    CHECK(bad.error().kind == Kind::invalid_sql);
    CHECK(must_query(*src, "SELECT abs(?)", {Json(-3)}).rows.at(0)[0] == 3);
  }
  SECTION("more distinct statements than the cache holds still answer correctly") {
    for (int round = 0; round < 2; ++round) {
      for (int i = 0; i < 100; ++i) {
        const QueryResult r = must_query(*src, "SELECT " + std::to_string(i));
        CHECK(r.rows.at(0)[0] == i);
      }
    }
  }
}

TEST_CASE("mcpd::SqliteSource answers queries from 4 threads at once", "[mcpd][sqlite]") {
  const DemoBank bank;
  const std::size_t pool = GENERATE(std::size_t{1}, std::size_t{2}, std::size_t{4});
  QueryLimits limits;
  limits.pool = pool;
  limits.timeout = 10s;  // a thread may wait for a connection; not the point here
  const auto src = bank.open(limits);

  std::mutex mu;
  std::vector<std::string> failures;
  std::atomic<int> answered{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 250; ++i) {
        const std::int64_t id = 1 + (t * 250 + i) % bank.stats.customers;
        auto r = src->query("SELECT id, full_name FROM customers WHERE id = ?", {Json(id)});
        if (r && r->rows.size() == 1 && r->rows[0][0] == id) {
          ++answered;
        } else {
          const std::lock_guard lock(mu);
          failures.push_back(r ? "wrong answer" : r.error().message);
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  INFO("pool " << pool);
  CHECK(failures.empty());
  CHECK(answered == 1000);
}

TEST_CASE("mcpd::CancelScope stops a running query with kind cancelled", "[mcpd][sqlite][cancel]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.timeout = 60s;  // only the cancellation can end it
  limits.pool = 1;
  const auto src = bank.open(limits);
  std::atomic<bool> cancel{false};
  std::thread canceller([&] {
    std::this_thread::sleep_for(100ms);
    cancel = true;
  });
  DataResult<QueryResult> r;
  {
    const CancelScope scope(&cancel);
    r = src->query("SELECT count(*) FROM transactions a, transactions b, transactions c", {});
  }
  canceller.join();
  REQUIRE_FALSE(r);
  CHECK(r.error().kind == Kind::cancelled);
  CHECK(CancelScope::current() == nullptr);
  // Outside the scope the flag no longer matters.
  CHECK(must_query(*src, "SELECT 1").rows.size() == 1);
}

TEST_CASE("mcpd::SqliteSource::check holds a statement to what running it requires", "[mcpd][sqlite]") {
  const DemoBank bank;
  const auto src = bank.open();
  CHECK(src->check("SELECT id FROM customers WHERE id = ?", 1));
  CHECK(src->check("SELECT id FROM customers WHERE id = ?1 OR id = ?2", 2));
  auto wrong_count = src->check("SELECT id FROM customers WHERE id = ?", 0);
  REQUIRE_FALSE(wrong_count);
  CHECK(wrong_count.error().kind == Kind::invalid_sql);
  // Named parameters never bind at run time: refused when stored, too.
  for (const char* sql : {"SELECT id FROM customers WHERE id = :id", "SELECT id FROM customers WHERE id = @id",
                          "SELECT id FROM customers WHERE id = $id"}) {
    INFO(sql);
    auto r = src->check(sql, 1);
    REQUIRE_FALSE(r);
    CHECK(r.error().message == "only positional ? parameters are supported");
  }
  CHECK_FALSE(src->check("DELETE FROM customers", 0));
}

TEST_CASE("mcpd::SqliteSource gives back its idle connections' page caches", "[mcpd][sqlite][memory]") {
  DemoOptions o = small_bank();
  o.transactions = 40000;  // a few MB of table: more than one connection's 2 MiB page cache
  const DemoBank bank(o);
  auto src = bank.open();
  const std::string scan = "SELECT sum(amount_cents), count(DISTINCT merchant) FROM transactions";
  auto first = src->query(scan, {});
  REQUIRE(first);
  const sqlite3_int64 cached = sqlite3_memory_used();
  src->release_memory();
  const sqlite3_int64 released = sqlite3_memory_used();
  CHECK(cached - released >= sqlite3_int64{1} << 20);
  // Nothing it needs is lost: the same answer, read again.
  auto again = src->query(scan, {});
  REQUIRE(again);
  CHECK(again->rows == first->rows);
  CHECK(sqlite3_memory_used() > released);  // the cache fills again
}

TEST_CASE("mcpd::SqliteSource: past SQLite's soft heap limit page caches stop growing", "[mcpd][sqlite][memory]") {
  DemoOptions o = small_bank();
  o.transactions = 40000;
  const DemoBank bank(o);
  QueryLimits limits;
  limits.pool = 4;
  auto src = bank.open(limits);
  // As sluice-mcpd sets it (at half its hard limit), here just above what
  // the process holds now: four connections' caches would take 8 MiB more.
  const sqlite3_int64 soft = sqlite3_memory_used() + (sqlite3_int64{2} << 20);
  // Restored however the test ends: the limit is the process's.
  struct Restore {
    sqlite3_int64 limit;
    ~Restore() { sqlite3_soft_heap_limit64(limit); }
  } restore{sqlite3_soft_heap_limit64(soft)};
  std::vector<std::thread> readers;
  std::atomic<int> ok{0};
  for (int i = 0; i < 4; ++i) {
    readers.emplace_back([&] {
      for (int j = 0; j < 3; ++j) {
        if (src->query("SELECT sum(amount_cents), max(ts) FROM transactions", {})) ++ok;
      }
    });
  }
  for (auto& t : readers) t.join();
  const sqlite3_int64 used = sqlite3_memory_used();
  CHECK(ok == 12);  // every query answered, from caches that recycle their pages
  CHECK(used < soft + (sqlite3_int64{1} << 20));
}
