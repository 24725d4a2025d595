#include "statement_cache.h"

#include <sqlite3.h>

namespace sluice::mcpd {

sqlite3_stmt* StatementCache::find(std::string_view sql) {
  const auto it = index_.find(sql);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->stmt;
}

void StatementCache::evict_last() {
  index_.erase(lru_.back().sql);
  sqlite3_finalize(lru_.back().stmt);
  bytes_ -= lru_.back().bytes;
  lru_.pop_back();
}

void StatementCache::insert(std::string sql, sqlite3_stmt* stmt) {
  const int used = sqlite3_stmt_status(stmt, SQLITE_STMTSTATUS_MEMUSED, 0);
  const std::size_t bytes = (used > 0 ? static_cast<std::size_t>(used) : 0) + sql.size();
  while (!lru_.empty() && (lru_.size() >= capacity_ || bytes_ + bytes > max_bytes_)) evict_last();
  lru_.push_front(Entry{std::move(sql), stmt, bytes});
  index_.emplace(lru_.front().sql, lru_.begin());
  bytes_ += bytes;
}

void StatementCache::clear() {
  index_.clear();
  for (Entry& e : lru_) sqlite3_finalize(e.stmt);
  lru_.clear();
  bytes_ = 0;
}

}  // namespace sluice::mcpd
