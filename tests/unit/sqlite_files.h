// SQLite files as the unit tests change them from outside: a tenant's
// loader writing its file, an attacker editing mcpd's database.
#pragma once

#include <string>

#include <catch2/catch.hpp>
#include <sqlite3.h>

namespace sluice::testing {

// Runs `sql` on the file at `path` with a writable connection of the test's own.
inline void exec_sql(const std::string& path, const std::string& sql) {
  sqlite3* h = nullptr;
  REQUIRE(sqlite3_open(path.c_str(), &h) == SQLITE_OK);
  char* err = nullptr;
  const int rc = sqlite3_exec(h, sql.c_str(), nullptr, nullptr, &err);
  INFO(sql.substr(0, 200) << ": " << (err ? err : ""));
  sqlite3_free(err);
  sqlite3_close(h);
  REQUIRE(rc == SQLITE_OK);
}

// Two triggers on the demo bank's customers, some 100 KB of SQL that
// SQLite parses into about 2 MiB: the kind of schema a hostile file carries
// to fill SQLite's heap, which every tenant shares (each connection keeps
// its own parse).
inline std::string heavy_triggers() {
  std::string sql;
  for (const char* name : {"t1", "t2"}) {
    sql += std::string("CREATE TRIGGER ") + name + " AFTER INSERT ON customers BEGIN SELECT 0";
    for (int i = 0; i < 1900; ++i) sql += ",coalesce(new.id," + std::to_string(i) + ",0)";
    sql += "; END;";
  }
  return sql;
}

}  // namespace sluice::testing
