// entities() and describe(): the schema snapshot and statistics that carry
// no cell values.
#include "schema.h"

#include <algorithm>
#include <atomic>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <sqlite3.h>

#include "sqlite_files.h"
#include "test_support.h"

using namespace sluice::mcpd;
using namespace sluice::mcpd::testing;
using sluice::testing::exec_sql;
using sluice::testing::heavy_triggers;
using Catch::Matchers::Contains;
using Json = nlohmann::json;
using Kind = DataError::Kind;

namespace {

const Column* find_column(const EntityInfo& e, const std::string& name) {
  for (const Column& c : e.columns) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("mcpd::SqliteSource::entities lists tables and views with columns", "[mcpd][schema]") {
  const DemoBank bank;

  SECTION("the demo bank has its four tables, sorted, and nothing of SQLite's") {
    const auto src = bank.open();
    auto entities = src->entities();
    REQUIRE(entities);
    std::vector<std::string> names;
    for (const EntityInfo& e : *entities) names.push_back(e.name);
    CHECK(names == std::vector<std::string>{"accounts", "cards", "customers", "transactions"});
    for (const EntityInfo& e : *entities) CHECK(e.kind == "table");
  }
  SECTION("columns carry their declared type, NOT NULL and primary key") {
    const auto src = bank.open();
    const EntityInfo customers = src->entities().value().at(2);
    REQUIRE(customers.columns.size() == 7);
    const Column* id = find_column(customers, "id");
    const Column* name = find_column(customers, "full_name");
    const Column* email = find_column(customers, "email");
    REQUIRE((id && name && email));
    CHECK((id->type == "INTEGER" && id->primary_key));
    CHECK((name->type == "TEXT" && name->not_null && !name->primary_key));
    CHECK_FALSE(email->not_null);
  }
  SECTION("views are listed and readable; virtual tables are neither") {
    exec_sql(bank.path,
              "CREATE VIEW big_spenders AS SELECT account_id, sum(amount_cents) AS total "
              "FROM transactions GROUP BY account_id;"
              "CREATE VIRTUAL TABLE notes USING fts5(body);");
    const auto src = bank.open();
    auto entities = src->entities();
    REQUIRE(entities);
    const auto has = [&](const std::string& n) {
      return std::any_of(entities->begin(), entities->end(),
                         [&](const EntityInfo& e) { return e.name == n; });
    };
    CHECK(has("big_spenders"));
    CHECK_FALSE(has("notes"));
    CHECK(must_query(*src, "SELECT count(*) FROM big_spenders").rows.at(0)[0].get<int>() > 0);
    CHECK_FALSE(src->query("SELECT * FROM notes", {}));
  }
  SECTION("a view that calls a refused function is left out and cannot be queried") {
    exec_sql(bank.path, "CREATE VIEW sneaky AS SELECT sqlite_version() AS v");
    const auto src = bank.open();
    const std::vector<EntityInfo> entities = src->entities().value();
    CHECK(std::none_of(entities.begin(), entities.end(),
                       [](const EntityInfo& e) { return e.name == "sneaky"; }));
    auto r = src->query("SELECT * FROM sneaky", {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::denied);
  }
}

TEST_CASE("mcpd::SqliteSource::describe gives statistics and never values", "[mcpd][schema]") {
  const DemoBank bank;
  const auto src = bank.open();
  auto stats = src->describe("customers");
  REQUIRE(stats);

  SECTION("the row count is exact and the sample is the whole table") {
    CHECK(stats->row_count == bank.stats.customers);
    CHECK_FALSE(stats->approximate);
    CHECK(stats->info.name == "customers");
    REQUIRE(stats->columns.size() == 7);
  }
  SECTION("null fractions and distinct counts describe the columns") {
    for (const ColumnStats& c : stats->columns) {
      INFO(c.column.name);
      if (c.column.name == "id") {
        CHECK(c.distinct_count == bank.stats.customers);
        CHECK(c.null_fraction == 0.0);
      } else if (c.column.name == "email") {
        CHECK(c.null_fraction > 0.0);  // the generator leaves ~7% empty
        CHECK(c.null_fraction < 0.3);
      } else if (c.column.name == "segment") {
        CHECK(c.distinct_count <= 4);
      }
    }
  }
  SECTION("the serialised statistics contain no cell value") {
    const std::string text = Json(*stats).dump();
    const QueryResult people = must_query(*src, "SELECT full_name, email FROM customers");
    for (const Json& row : people.rows) {
      for (const Json& cell : row) {
        if (cell.is_string()) CHECK_THAT(text, !Contains(cell.get<std::string>()));
      }
    }
    CHECK_THAT(text, !Contains("\"min\"") && !Contains("\"max\""));
  }
  SECTION("a second describe is served from the cache") {
    auto again = src->describe("customers");
    REQUIRE(again);
    CHECK(Json(*again) == Json(*stats));
  }
  SECTION("names match case-insensitively, as in SQL") {
    auto upper = src->describe("CUSTOMERS");
    REQUIRE(upper);
    CHECK(upper->info.name == "customers");
  }
}

TEST_CASE("mcpd::SqliteSource::describe remembers statistics that timed out", "[mcpd][schema]") {
  const DemoBank bank;
  // A view as slow as its limit says: counting it times out while the
  // limit is high, and is quick once it is low.
  exec_sql(bank.path, "CREATE TABLE lim(n INTEGER); INSERT INTO lim VALUES (1000000000);"
                       "CREATE VIEW slow AS WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c, lim "
                       "WHERE x < lim.n) SELECT x FROM c");
  QueryLimits limits;
  limits.stats_timeout = std::chrono::milliseconds(100);
  const auto src = bank.open(limits);
  auto first = src->describe("slow");
  REQUIRE_FALSE(first);
  CHECK(first.error().kind == Kind::timeout);
  exec_sql(bank.path, "UPDATE lim SET n = 10");
  // Computing again would succeed now; within kStatsRetryAfter it is not
  // computed again (a slow entity would cost every caller its timeout).
  auto again = src->describe("slow");
  REQUIRE_FALSE(again);
  CHECK(again.error().kind == Kind::timeout);
  CHECK(src->describe("customers"));  // other entities are unaffected
}

TEST_CASE("mcpd::SqliteSource: until the schema is looked at again, a newer table shows nothing, not even its row count",
          "[mcpd][schema]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::hours(1);
  const auto src = bank.open(limits);
  exec_sql(bank.path, "CREATE TABLE later(secret TEXT); INSERT INTO later VALUES ('a'), ('b');");
  for (const char* sql : {"SELECT count(*) FROM later", "SELECT secret FROM later", "SELECT 1 FROM later"}) {
    INFO(sql);
    auto r = src->query(sql, {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::denied);
    CHECK_FALSE(src->check(sql, 0));
  }
  CHECK(src->entities().value().size() == 4);
  CHECK(src->describe("later").error().kind == Kind::not_found);
  // Common table expressions, whose names no schema holds, still count.
  CHECK(must_query(*src, "WITH c(x) AS (SELECT 1 UNION ALL SELECT 2) SELECT count(*) FROM c").rows.at(0)[0] == 2);
  CHECK(must_query(*src, "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c LIMIT 5) "
                         "SELECT count(*) FROM c").rows.at(0)[0] == 5);
  CHECK(must_query(*src, "SELECT count(*) FROM customers").rows.at(0)[0] == bank.stats.customers);
}

TEST_CASE("mcpd::SqliteSource reads a changed schema again", "[mcpd][schema]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  const auto src = bank.open(limits);
  REQUIRE(src->describe("cards"));  // cached statistics of the old snapshot

  SECTION("a new table: the query that was refused runs, and the table is listed and described") {
    exec_sql(bank.path, "CREATE TABLE later(secret TEXT); INSERT INTO later VALUES ('a'), ('b');");
    CHECK(must_query(*src, "SELECT count(*) FROM later").rows.at(0)[0] == 2);
    CHECK(src->check("SELECT secret FROM later WHERE secret = ?", 1));
    const auto entities = src->entities().value();
    REQUIRE(entities.size() == 5);
    CHECK(entities[3].name == "later");
    auto stats = src->describe("later");
    REQUIRE(stats);
    CHECK(stats->row_count == 2);
  }
  SECTION("a dropped table goes, with its statistics; a new column shows") {
    exec_sql(bank.path, "DROP TABLE cards; ALTER TABLE customers ADD COLUMN nickname TEXT;");
    const auto entities = src->entities().value();
    std::vector<std::string> names;
    for (const EntityInfo& e : entities) names.push_back(e.name);
    CHECK(names == std::vector<std::string>{"accounts", "customers", "transactions"});
    CHECK(src->describe("cards").error().kind == Kind::not_found);
    CHECK(find_column(entities[1], "nickname"));
    CHECK(must_query(*src, "SELECT count(nickname) FROM customers").rows.at(0)[0] == 0);
  }
  SECTION("a new view is listed, unless it cannot run as a user statement") {
    exec_sql(bank.path, "CREATE VIEW bad AS SELECT sqlite_version() AS v;"
                         "CREATE VIEW good AS SELECT id FROM cards;");
    const auto entities = src->entities().value();
    std::vector<std::string> names;
    for (const EntityInfo& e : entities) names.push_back(e.name);
    CHECK(names == std::vector<std::string>{"accounts", "cards", "customers", "good", "transactions"});
    CHECK(must_query(*src, "SELECT count(*) FROM good").rows.at(0)[0] == bank.stats.cards);
    auto r = src->query("SELECT v FROM bad", {});
    REQUIRE_FALSE(r);
    CHECK(r.error().kind == Kind::denied);
  }
  SECTION("a saved query's check is looked at again too, before anything else is") {
    exec_sql(bank.path, "CREATE TABLE later(secret TEXT);");
    CHECK(src->check("SELECT secret FROM later WHERE secret = ?", 1));
  }
  SECTION("a caller's cancellation does not cut the look short") {
    // Enough tables that reading the schema takes thousands of VM steps,
    // past where a cancellation is first looked at.
    std::string sql;
    for (int i = 0; i < 400; ++i) sql += "CREATE TABLE later" + std::to_string(i) + "(secret TEXT);";
    exec_sql(bank.path, sql.c_str());
    const std::atomic<bool> cancelled{true};
    const CancelScope scope(&cancelled);
    CHECK(src->entities().value().size() == 404);
  }
  SECTION("statistics of an entity that did not change are kept; of one that did, computed again") {
    const std::int64_t before = src->describe("cards")->row_count;
    exec_sql(bank.path, "INSERT INTO cards(account_id) VALUES (1); CREATE TABLE later(x);");
    REQUIRE(src->entities().value().size() == 5);  // the snapshot moved
    CHECK(src->describe("cards")->row_count == before);
    exec_sql(bank.path, "ALTER TABLE cards ADD COLUMN nickname TEXT;");
    auto after = src->describe("cards");
    REQUIRE(after);
    CHECK(after->row_count == before + 1);
    CHECK(after->columns.back().column.name == "nickname");
  }
  SECTION("a view redefined with the same columns is another entity: its statistics are computed again") {
    exec_sql(bank.path, "CREATE VIEW v AS SELECT id FROM cards;");
    REQUIRE(src->describe("v")->row_count == bank.stats.cards);
    exec_sql(bank.path, "DROP VIEW v; CREATE VIEW v AS SELECT id FROM cards WHERE id <= 3;");
    CHECK(src->describe("v")->row_count == 3);
  }
  SECTION("every pooled connection takes up the new snapshot") {
    exec_sql(bank.path, "CREATE TABLE later(n INTEGER); INSERT INTO later VALUES (1);");
    REQUIRE(src->entities().value().size() == 5);
    // As many slow queries at once as the pool has connections: each
    // holds its own while the others run.
    const char* slow = "SELECT n, (WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c "
                       "WHERE x < 300000) SELECT count(*) FROM c) FROM later";
    std::atomic<int> failed{0};
    std::latch start(static_cast<std::ptrdiff_t>(limits.pool));
    std::vector<std::thread> threads;
    for (std::size_t t = 0; t < limits.pool; ++t) {
      threads.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 3; ++i) {
          if (!src->query(slow, {})) ++failed;
        }
      });
    }
    for (auto& t : threads) t.join();
    CHECK(failed == 0);
  }
}

TEST_CASE("mcpd::SqliteSource computes statistics again once they are stats_max_age old", "[mcpd][schema]") {
  const DemoBank bank;
  for (const bool stale : {false, true}) {
    INFO("stale: " << stale);
    QueryLimits limits;
    limits.stats_max_age = stale ? std::chrono::milliseconds(0) : std::chrono::minutes(10);
    const auto src = bank.open(limits);
    REQUIRE(src->describe("cards")->row_count == bank.stats.cards);
    exec_sql(bank.path, "INSERT INTO cards SELECT id + 1000000, account_id, pan_last4, network, status, expires "
                         "FROM cards WHERE id = (SELECT min(id) FROM cards)");
    const std::int64_t now = src->describe("cards")->row_count;
    CHECK(now == (stale ? bank.stats.cards + 1 : bank.stats.cards));
    exec_sql(bank.path, "DELETE FROM cards WHERE id > 1000000");
  }
}

TEST_CASE("mcpd::SqliteSource::describe refuses names that are not entities", "[mcpd][schema]") {
  const DemoBank bank;
  const auto src = bank.open();
  const Fingerprint before = Fingerprint::of(bank.path);
  for (const char* name :
       {"nope", "customers\"; DROP TABLE customers; --", "customers\" --", "\"customers\"",
        "customers WHERE 1", "sqlite_schema", "sqlite_stat1", "pragma_table_info", ""}) {
    SECTION(std::string("unknown: ") + name) {
      auto r = src->describe(name);
      REQUIRE_FALSE(r);
      CHECK(r.error().kind == Kind::not_found);
      CHECK(r.error().message == "no such entity");
    }
  }
  CHECK(Fingerprint::of(bank.path) == before);
  CHECK(must_query(*src, "SELECT count(*) FROM customers").rows.at(0)[0] ==
        bank.stats.customers);
}

TEST_CASE("mcpd::SqliteSource::describe samples a big table", "[mcpd][schema]") {
  const DemoBank bank;
  // 250,001 rows: over the sample size, built in SQL in a fraction of a second.
  exec_sql(bank.path,
            "CREATE TABLE big(id INTEGER PRIMARY KEY, bucket INTEGER, maybe TEXT);"
            "WITH RECURSIVE n(x) AS (SELECT 0 UNION ALL SELECT x + 1 FROM n WHERE x < 250000) "
            "INSERT INTO big SELECT x, x % 1000, CASE WHEN x % 4 = 0 THEN NULL ELSE 'v' END "
            "FROM n;");
  const auto src = bank.open();
  auto stats = src->describe("big");
  REQUIRE(stats);

  SECTION("the row count stays exact and the result is flagged approximate") {
    CHECK(stats->row_count == 250001);
    CHECK(stats->approximate);
  }
  SECTION("per-column figures come from the first rows in table order") {
    REQUIRE(stats->columns.size() == 3);
    CHECK(stats->columns[0].distinct_count == kStatsSampleRows);
    CHECK(stats->columns[1].distinct_count == 1000);
    CHECK(stats->columns[2].null_fraction == Approx(0.25));
  }
}

TEST_CASE("mcpd::quote_identifier doubles embedded quotes", "[mcpd][schema]") {
  CHECK(quote_identifier("customers") == "\"customers\"");
  CHECK(quote_identifier("a\"b") == "\"a\"\"b\"");
  CHECK(quote_identifier("") == "\"\"");
}

TEST_CASE("mcpd::SqliteSource does not serve a file whose schema takes too much memory", "[mcpd][schema][memory]") {
  const DemoBank bank;
  QueryLimits limits;
  limits.schema_memory = std::size_t{1} << 20;
  limits.schema_check_interval = std::chrono::milliseconds(0);
  // The demo bank (four tables, their indexes) fits in a MiB.
  const auto src = bank.open(limits);
  CHECK(src->path_state() == SqliteSource::PathState::same);

  SECTION("opened with such a schema: refused, the detail saying why and which limit") {
    exec_sql(bank.path, heavy_triggers());
    auto refused = SqliteSource::open(bank.path, limits);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().message == "data source could not be opened");
    CHECK_THAT(refused.error().detail, Contains("schema_memory_mb"));
    QueryLimits roomy = limits;
    roomy.schema_memory = std::size_t{64} << 20;
    CHECK(SqliteSource::open(bank.path, roomy));  // the same file, a larger limit
  }
  SECTION("changed in place to such a schema: the open source gives up, its connections' memory with it") {
    exec_sql(bank.path, heavy_triggers());
    // The look at the schema (on the next call) finds it too large; the
    // source says so, for its owner to drop and open again (refused).
    (void)src->query("SELECT count(*) FROM cards", {});
    CHECK(src->retired());
    CHECK(src->path_state() == SqliteSource::PathState::none);
    CHECK_FALSE(SqliteSource::open(bank.path, limits));
    // Once the schema is small again, the file is served again.
    exec_sql(bank.path, "DROP TRIGGER t1; DROP TRIGGER t2;");
    CHECK(SqliteSource::open(bank.path, limits));
  }
}

TEST_CASE("mcpd::SqliteSource: an error naming the file is the client's own words or nothing", "[mcpd][schema]") {
  const DemoBank bank;
  const auto src = bank.open();
  // Guessing the file's name gets the same kind of answer whether or not
  // the guess is right: the statement's own words echoed, not a message
  // that changes when the name is in it.
  const auto message = [&](const std::string& from) {
    auto r = src->query("SELECT * FROM " + from, {});
    REQUIRE_FALSE(r);
    return r.error().message;
  };
  CHECK(message("\"bank.db\"") == "no such table: bank.db");
  CHECK(message("\"guess.db\"") == "no such table: guess.db");
  CHECK(message("\"" + bank.path + "\"") == "no such table: " + bank.path);
  // The name made by SQLite out of two that are not it.
  CHECK(message("\"bank\".\"db\"") == "no such table: bank.db");
  CHECK(message("\"guess\".\"db\"") == "no such table: guess.db");
  CHECK(message("customers WHERE \"bank.db\" = 1") == "no such column: bank.db");
}
