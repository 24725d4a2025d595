// Prepared statements of one connection, keyed by their exact SQL text,
// least recently used evicted first. Only statements compiled in user mode
// (authorizer.h) belong here: a cached statement is never authorized again
// unless SQLite recompiles it after a schema change.
#pragma once

#include <cstddef>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

struct sqlite3_stmt;

namespace sluice::mcpd {

class StatementCache {
 public:
  // At least one entry: the statement just inserted is about to be used.
  explicit StatementCache(std::size_t capacity) : capacity_(capacity > 0 ? capacity : 1) {}
  ~StatementCache() { clear(); }
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  // The statement for `sql`, now the most recently used, or nullptr.
  [[nodiscard]] sqlite3_stmt* find(std::string_view sql);
  // Takes ownership of `stmt`; finalizes the least recently used statement
  // when full. `sql` must not be cached already.
  void insert(std::string sql, sqlite3_stmt* stmt);
  // Finalizes every statement.
  void clear();
  [[nodiscard]] std::size_t size() const { return lru_.size(); }

 private:
  struct Entry {
    std::string sql;
    sqlite3_stmt* stmt;
  };
  std::size_t capacity_;
  std::list<Entry> lru_;  // most recent first; nodes never move, so...
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // ...keys view Entry::sql
};

}  // namespace sluice::mcpd
