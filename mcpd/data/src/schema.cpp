#include "schema.h"

#include <algorithm>
#include <cstdint>

#include "connection.h"

namespace sluice::mcpd {
namespace {

using Json = nlohmann::json;
using Kind = DataError::Kind;

static constexpr char kListEntitiesSql[] =
    "SELECT type, name, sql FROM sqlite_schema WHERE type IN ('table', 'view') ORDER BY name";
// The pragma itself, not the pragma_table_info() table: statements compile
// with SQLITE_PREPARE_NO_VTAB, and that eponymous virtual table would ask
// the authorizer to UPDATE sqlite_master while connecting anyway. A pragma
// takes no bound parameter, so the name goes in quoted as an identifier.
static constexpr char kColumnsPragma[] = "PRAGMA main.table_info(";
static constexpr char kSchemaVersionPragma[] = "PRAGMA main.schema_version";

// Columns per statistics statement: two result columns each, far below
// SQLITE_LIMIT_COLUMN.
constexpr std::size_t kStatsBatch = 64;
constexpr std::size_t kUnbounded = std::size_t{1} << 40;

// What is left of `deadline`, in whole milliseconds rounded up (0 once past).
std::chrono::milliseconds left_of(std::chrono::steady_clock::time_point deadline) {
  return std::max(std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()),
                  std::chrono::milliseconds(0));
}

RunOptions metadata_options(std::chrono::milliseconds timeout) {
  return RunOptions{Authorizer::Mode::metadata, timeout, kUnbounded, kUnbounded, false};
}

std::string text_at(const Json& row, std::size_t i) {
  return row.at(i).is_string() ? row.at(i).get<std::string>() : std::string();
}

std::int64_t int_at(const Json& row, std::size_t i) {
  return row.at(i).is_number_integer() ? row.at(i).get<std::int64_t>() : 0;
}

// Whether reading an entity failed because of the entity (a view that
// calls a refused function or names a table that is gone), not because of
// the moment (time, cancellation, memory, a busy file).
bool entity_fault(const DataError& e) { return e.kind == Kind::denied || e.kind == Kind::invalid_sql; }

bool iequals_prefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && ascii_lower(s.substr(0, prefix.size())) == prefix;
}

DataResult<std::vector<Column>> load_columns(Connection& c, const std::string& entity,
                                             std::chrono::milliseconds timeout) {
  const std::string sql = kColumnsPragma + quote_identifier(entity) + ")";
  auto r = c.run(sql, {}, metadata_options(timeout));
  if (!r) return tl::unexpected(std::move(r.error()));
  // Result columns: cid, name, type, notnull, dflt_value, pk.
  std::vector<Column> columns;
  for (const Json& row : r->rows) {
    columns.push_back(Column{text_at(row, 1), text_at(row, 2), int_at(row, 3) != 0,
                             int_at(row, 5) != 0});
  }
  return columns;
}

}  // namespace

std::string quote_identifier(std::string_view name) {
  std::string q = "\"";
  for (char ch : name) {
    if (ch == '"') q += '"';
    q += ch;
  }
  return q + "\"";
}

const EntityInfo* find_entity(const std::vector<EntityInfo>& entities, std::string_view name) {
  for (const EntityInfo& e : entities) {
    if (e.name == name) return &e;
  }
  const std::string lower = ascii_lower(name);
  for (const EntityInfo& e : entities) {
    if (ascii_lower(e.name) == lower) return &e;
  }
  return nullptr;
}

DataResult<std::int64_t> read_schema_version(Connection& c, std::chrono::milliseconds timeout) {
  auto r = c.run(kSchemaVersionPragma, {}, metadata_options(timeout));
  if (!r) return tl::unexpected(std::move(r.error()));
  if (r->rows.size() != 1 || !r->rows[0].at(0).is_number_integer()) {
    return data_error(Kind::internal, "schema unavailable", "schema_version: unexpected answer");
  }
  return int_at(r->rows[0], 0);
}

DataResult<Schema> load_schema(Connection& c, std::chrono::milliseconds budget) {
  // One deadline for every statement of the reading (a file a loader keeps
  // locking between them must not stretch it to one timeout per table).
  const auto deadline = std::chrono::steady_clock::now() + budget;
  std::chrono::milliseconds timeout = budget;
  const auto time_left = [&] {
    timeout = left_of(deadline);
    return timeout.count() > 0;
  };
  const auto past_deadline = [] {
    return data_error(Kind::timeout, "data source busy", "reading the schema took longer than the query timeout");
  };
  auto version = read_schema_version(c, timeout);
  if (!version) return tl::unexpected(std::move(version.error()));
  if (!time_left()) return past_deadline();
  auto listed = c.run(kListEntitiesSql, {}, metadata_options(timeout));
  if (!listed) return tl::unexpected(std::move(listed.error()));
  // Parsed by now (reading the list compiles against it).
  if (auto fits = c.check_schema_memory(); !fits) return tl::unexpected(std::move(fits.error()));
  std::vector<EntityInfo> candidates;
  Authorizer::NameSet hidden;
  for (const Json& row : listed->rows) {
    EntityInfo e{text_at(row, 1), text_at(row, 0), {}, text_at(row, 2)};
    if (iequals_prefix(e.name, "sqlite_") || iequals_prefix(text_at(row, 2), "create virtual")) {
      hidden.insert(ascii_lower(e.name));
      continue;
    }
    if (!time_left()) return past_deadline();
    auto columns = load_columns(c, e.name, timeout);
    // Only the entity's own fault hides it; a timeout, a cancellation, a
    // lack of memory or a busy file says nothing about it: fail rather than
    // hide it (a snapshot read again keeps the one it had).
    if (!columns && !entity_fault(columns.error())) return tl::unexpected(columns.error());
    // No columns: the name was not valid UTF-8 and was repaired, so it
    // names nothing; queries could not read it either (fail closed).
    if (!columns || columns->empty()) {
      hidden.insert(ascii_lower(e.name));
      continue;
    }
    e.columns = std::move(*columns);
    candidates.push_back(std::move(e));
  }
  const auto install = [&](const std::vector<EntityInfo>& readable) {
    auto names = std::make_shared<Authorizer::NameSet>();
    for (const EntityInfo& e : readable) names->insert(ascii_lower(e.name));
    Schema s{readable, std::move(names), std::make_shared<Authorizer::NameSet>(hidden), *version};
    c.set_names(s.readable, s.hidden);
    return s;
  };
  install(candidates);
  // Column names of a view come without authorization; compiling it as a
  // user would is what tells whether it can be queried.
  std::vector<EntityInfo> entities;
  for (EntityInfo& e : candidates) {
    if (e.kind == "view") {
      if (!time_left()) return past_deadline();
      auto compiled = c.check("SELECT * FROM " + quote_identifier(e.name), 0, timeout);
      if (!compiled && !entity_fault(compiled.error())) return tl::unexpected(compiled.error());
      if (!compiled) {
        hidden.insert(ascii_lower(e.name));
        continue;
      }
    }
    entities.push_back(std::move(e));
  }
  std::sort(entities.begin(), entities.end(),
            [](const EntityInfo& a, const EntityInfo& b) { return a.name < b.name; });
  return install(entities);
}

DataResult<EntityStats> compute_stats(Connection& c, const EntityInfo& e,
                                      std::size_t max_sql_bytes, std::chrono::milliseconds timeout) {
  const std::string from = quote_identifier(e.name);
  // One deadline for all of it, however many statements it takes.
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const auto options = [&] { return metadata_options(std::max(left_of(deadline), std::chrono::milliseconds(1))); };
  auto counted = c.run("SELECT count(*) FROM " + from, {}, options());
  if (!counted) return tl::unexpected(std::move(counted.error()));
  EntityStats s{e, counted->rows.empty() ? 0 : int_at(counted->rows[0], 0), {}, false};
  s.approximate = s.row_count > kStatsSampleRows;
  // NOT INDEXED: a covering index would otherwise change which rows the
  // sample holds. Views have no indexes of their own (and refuse the hint).
  const std::string sample_from = from + (e.kind == "table" ? " NOT INDEXED" : "");

  std::size_t first = 0;
  std::size_t retry_until = 0;  // columns before this one go singly: their batch outgrew the budget
  while (first < e.columns.size()) {
    // A batch of columns, bounded in count and in SQL text.
    std::string outer = "SELECT count(*)";
    std::string inner;
    std::size_t last = first;
    const std::size_t most = first < retry_until ? 1 : kStatsBatch;
    while (last < e.columns.size() && last - first < most &&
           (last == first || outer.size() + inner.size() < max_sql_bytes / 2)) {
      const std::string q = quote_identifier(e.columns[last].name);
      outer += ", count(" + q + "), count(DISTINCT " + q + ")";
      inner += (last == first ? "" : ", ") + q;
      ++last;
    }
    const std::string sql =
        outer + " FROM (SELECT " + inner + " FROM " + sample_from + " LIMIT ?)";
    auto r = c.run(sql, {Json(kStatsSampleRows)}, options());
    // Too many distinct counts at once for the temporary-storage budget:
    // this batch again, a column at a time (the ones done are kept).
    if (!r && r.error().message == kTooMuchMemory && last - first > 1) {
      retry_until = last;
      continue;
    }
    if (!r) return tl::unexpected(std::move(r.error()));
    if (r->rows.empty()) return data_error(Kind::internal, "statistics unavailable");
    const Json& row = r->rows[0];
    const std::int64_t sampled = int_at(row, 0);
    for (std::size_t i = first; i < last; ++i) {
      const std::size_t at = 1 + 2 * (i - first);
      const std::int64_t non_null = int_at(row, at);
      const double nulls = sampled == 0 ? 0.0 : double(sampled - non_null) / double(sampled);
      s.columns.push_back(ColumnStats{e.columns[i], nulls, int_at(row, at + 1)});
    }
    first = last;
  }
  return s;
}

}  // namespace sluice::mcpd
