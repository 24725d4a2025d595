#include "statement_cache.h"

#include <sqlite3.h>

namespace sluice::mcpd {

sqlite3_stmt* StatementCache::find(std::string_view sql) {
  const auto it = index_.find(sql);
  if (it == index_.end()) return nullptr;
  lru_.splice(lru_.begin(), lru_, it->second);
  return it->second->stmt;
}

void StatementCache::insert(std::string sql, sqlite3_stmt* stmt) {
  while (lru_.size() >= capacity_) {
    index_.erase(lru_.back().sql);
    sqlite3_finalize(lru_.back().stmt);
    lru_.pop_back();
  }
  lru_.push_front(Entry{std::move(sql), stmt});
  index_.emplace(lru_.front().sql, lru_.begin());
}

void StatementCache::clear() {
  index_.clear();
  for (Entry& e : lru_) sqlite3_finalize(e.stmt);
  lru_.clear();
}

}  // namespace sluice::mcpd
