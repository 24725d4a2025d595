// The schema snapshot of a data source and the statistics of its entities,
// read through a connection in metadata mode (authorizer.h).
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "authorizer.h"
#include "result.h"
#include "sqlite_source.h"

namespace sluice::mcpd {

class Connection;

struct Schema {
  std::vector<EntityInfo> entities;  // sorted by name
  // For Authorizer::set_names: the entities, and every other table or view.
  std::shared_ptr<const Authorizer::NameSet> readable;
  std::shared_ptr<const Authorizer::NameSet> hidden;
  // The file's schema_version, read before the rest: a change made while
  // this was read shows as a version that moved since.
  std::int64_t version = 0;
};

// The tables and views of the main schema that user statements can query,
// with their columns, and installs the names on `c`. Left out (hidden):
// sqlite_* tables, virtual tables (their module is code the tenant's file
// chooses), entities whose columns cannot be read, and views that do not
// compile as a user statement (one calling a refused function, say).
// All of it within `budget` (a timeout past it).
[[nodiscard]] DataResult<Schema> load_schema(Connection& c, std::chrono::milliseconds budget);

// The file's schema_version: SQLite moves it on every change of the schema.
[[nodiscard]] DataResult<std::int64_t> read_schema_version(Connection& c, std::chrono::milliseconds timeout);

// Row count (exact) and, per column, null fraction and distinct count over
// at most kStatsSampleRows rows: the first ones in table order (NOT INDEXED
// scan, so rowid or primary key order), which is deterministic for a given
// file. All of it runs under `timeout`; columns are batched so that no
// statement exceeds half of `max_sql_bytes`, at most 64 in one (each
// distinct count builds a temporary index); a batch whose temporary
// storage outgrows the budget is counted again a column at a time.
[[nodiscard]] DataResult<EntityStats> compute_stats(Connection& c, const EntityInfo& e,
                                                    std::size_t max_sql_bytes, std::chrono::milliseconds timeout);

// Statistics that timed out (or outgrew the temporary-storage budget) are
// answered from memory this long before they are tried again.
inline constexpr std::chrono::seconds kStatsRetryAfter{60};

// The entity called `name`: exact match first, then ASCII case-insensitive
// (as SQLite resolves names). nullptr if none.
[[nodiscard]] const EntityInfo* find_entity(const std::vector<EntityInfo>& entities,
                                            std::string_view name);

// "name" with embedded double quotes doubled: an SQL identifier.
[[nodiscard]] std::string quote_identifier(std::string_view name);

}  // namespace sluice::mcpd
