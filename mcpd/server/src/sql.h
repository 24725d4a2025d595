// A thin RAII layer over SQLite for mcpd's own database: statements are
// non-copyable and finalized on scope exit; a Transaction rolls back
// unless committed. SQL text lives in `static constexpr char[]` with `?`
// placeholders only.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "status.h"

namespace sluice::mcpd {

class Stmt {
 public:
  Stmt() = default;
  explicit Stmt(sqlite3_stmt* s) : s_(s) {}
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  Stmt(Stmt&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  Stmt& operator=(Stmt&& o) noexcept {
    std::swap(s_, o.s_);
    return *this;
  }
  ~Stmt() { sqlite3_finalize(s_); }

  Stmt& bind(int i, std::int64_t v) {
    sqlite3_bind_int64(s_, i, v);
    return *this;
  }
  Stmt& bind(int i, std::string_view v) {
    sqlite3_bind_text(s_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind(int i, const char* v) { return bind(i, std::string_view(v)); }
  Stmt& bind(int i, const std::string& v) { return bind(i, std::string_view(v)); }
  Stmt& bind_blob(int i, const void* data, std::size_t len) {
    sqlite3_bind_blob(s_, i, data, static_cast<int>(len), SQLITE_TRANSIENT);
    return *this;
  }
  Stmt& bind_null(int i) {
    sqlite3_bind_null(s_, i);
    return *this;
  }
  Stmt& bind(int i, std::optional<std::int64_t> v) {
    return v ? bind(i, *v) : bind_null(i);
  }

  // SQLITE_ROW: true; SQLITE_DONE: false; anything else: the error.
  Result<bool> step();
  Status run();  // steps to completion, expecting no rows
  void reset() {
    sqlite3_reset(s_);
    sqlite3_clear_bindings(s_);
  }

  [[nodiscard]] std::int64_t int64(int col) const { return sqlite3_column_int64(s_, col); }
  [[nodiscard]] int type(int col) const { return sqlite3_column_type(s_, col); }
  [[nodiscard]] bool is_null(int col) const { return sqlite3_column_type(s_, col) == SQLITE_NULL; }
  [[nodiscard]] std::optional<std::int64_t> opt_int64(int col) const {
    if (is_null(col)) return std::nullopt;
    return int64(col);
  }
  [[nodiscard]] std::string text(int col) const {
    const auto* p = sqlite3_column_text(s_, col);
    return p ? std::string(reinterpret_cast<const char*>(p),
                           static_cast<std::size_t>(sqlite3_column_bytes(s_, col)))
             : std::string();
  }
  [[nodiscard]] std::vector<std::uint8_t> blob(int col) const {
    const auto* p = static_cast<const std::uint8_t*>(sqlite3_column_blob(s_, col));
    return p ? std::vector<std::uint8_t>(p, p + sqlite3_column_bytes(s_, col))
             : std::vector<std::uint8_t>();
  }

 private:
  sqlite3_stmt* s_ = nullptr;
};

class Db {
 public:
  // Opens (creating if asked) a database for mcpd's own use: WAL, full
  // synchronous commits, foreign keys, a busy timeout.
  static Result<Db> open(const std::string& path, bool create);
  Db() = default;
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  Db(Db&& o) noexcept : db_(o.db_) { o.db_ = nullptr; }
  Db& operator=(Db&& o) noexcept {
    std::swap(db_, o.db_);
    return *this;
  }
  ~Db() { sqlite3_close_v2(db_); }

  Status exec(const char* sql);
  Result<Stmt> prepare(std::string_view sql);
  [[nodiscard]] std::int64_t last_rowid() const { return sqlite3_last_insert_rowid(db_); }
  [[nodiscard]] int changes() const { return sqlite3_changes(db_); }
  [[nodiscard]] sqlite3* raw() const { return db_; }

 private:
  explicit Db(sqlite3* db) : db_(db) {}
  sqlite3* db_ = nullptr;
};

// BEGIN IMMEDIATE on construction; ROLLBACK on destruction unless commit()
// succeeded.
class Transaction {
 public:
  explicit Transaction(Db& db) : db_(db) { ok_ = db_.exec("BEGIN IMMEDIATE").has_value(); }
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction() {
    if (ok_ && !committed_) (void)db_.exec("ROLLBACK");
  }
  [[nodiscard]] bool began() const { return ok_; }
  Status commit() {
    if (!ok_) return fail("transaction did not begin");
    auto s = db_.exec("COMMIT");
    committed_ = s.has_value();
    return s;
  }

 private:
  Db& db_;
  bool ok_ = false;
  bool committed_ = false;
};

}  // namespace sluice::mcpd
