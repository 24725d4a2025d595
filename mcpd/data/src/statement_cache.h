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
  // `max_bytes`: what the cached statements may take of SQLite's heap
  // together (as each measured when inserted); the least recently used go
  // first, down to the newest alone.
  explicit StatementCache(std::size_t capacity, std::size_t max_bytes = std::size_t{4} << 20)
      : capacity_(capacity > 0 ? capacity : 1), max_bytes_(max_bytes) {}
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
  [[nodiscard]] std::size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string sql;
    sqlite3_stmt* stmt;
    std::size_t bytes;
  };
  void evict_last();
  std::size_t capacity_;
  std::size_t max_bytes_;
  std::size_t bytes_ = 0;
  std::list<Entry> lru_;  // most recent first; nodes never move, so...
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;  // ...keys view Entry::sql
};

}  // namespace sluice::mcpd
