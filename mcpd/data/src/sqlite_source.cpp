#include "sqlite_source.h"

#include <exception>
#include <utility>

#include "connection.h"
#include "schema.h"
#include "values.h"

namespace sluice::mcpd {
namespace {

using Kind = DataError::Kind;
using Json = nlohmann::json;

constexpr std::size_t kMaxPool = 64;
constexpr std::size_t kMinSqlBytes = 1024;

// No exception leaves the data layer: the likely ones (bad_alloc, a
// system_error from a mutex) become an internal error at the API boundary.
template <class F>
auto guarded(F&& f) -> decltype(f()) {
  try {
    return f();
  } catch (const std::exception& e) {
    return data_error(Kind::internal, "internal error", e.what());
  }
}

DataResult<void> check_limits(const QueryLimits& l) {
  if (l.pool == 0 || l.pool > kMaxPool || l.max_rows == 0 || l.timeout.count() <= 0 ||
      l.max_result_bytes == 0 || l.max_sql_bytes < kMinSqlBytes || l.max_params == 0) {
    return data_error(Kind::internal, "invalid query limits",
                      "pool 1-64, max_rows/max_result_bytes/max_params >= 1, timeout > 0, "
                      "max_sql_bytes >= 1024");
  }
  return {};
}

}  // namespace

class SqliteSource::Lease {
 public:
  Lease(const SqliteSource* source, Connection* conn) : source_(source), conn_(conn) {}
  Lease(Lease&& o) noexcept
      : source_(std::exchange(o.source_, nullptr)), conn_(std::exchange(o.conn_, nullptr)) {}
  Lease& operator=(Lease&&) = delete;
  ~Lease() {
    if (!source_) return;
    {
      const std::lock_guard lock(source_->pool_mu_);
      source_->idle_.push_back(conn_);
    }
    source_->pool_cv_.notify_one();
  }
  Connection* operator->() const { return conn_; }
  Connection& operator*() const { return *conn_; }

 private:
  const SqliteSource* source_;
  Connection* conn_;
};

DataResult<std::unique_ptr<SqliteSource>> SqliteSource::open(const std::string& path,
                                                             const QueryLimits& limits) {
  return guarded([&]() -> DataResult<std::unique_ptr<SqliteSource>> {
    if (auto ok = check_limits(limits); !ok) return tl::unexpected(ok.error());
    std::vector<std::unique_ptr<Connection>> pool;
    for (std::size_t i = 0; i < limits.pool; ++i) {
      auto c = Connection::open(path, limits);
      if (!c) return tl::unexpected(std::move(c.error()));
      pool.push_back(std::move(*c));
    }
    // The first read of the file: a file that is not a database fails here.
    auto schema = load_schema(*pool.front(), limits.timeout);
    if (!schema) {
      DataError e = std::move(schema.error());
      if (e.kind != Kind::timeout) e.message = "data source could not be opened";
      e.detail = "reading the schema of " + path + ": " + e.detail;
      return tl::unexpected(std::move(e));
    }
    for (auto& c : pool) c->set_names(schema->readable, schema->hidden);
    return std::unique_ptr<SqliteSource>(
        new SqliteSource(limits, std::move(pool), std::move(schema->entities)));
  });
}

SqliteSource::SqliteSource(QueryLimits limits, std::vector<std::unique_ptr<Connection>> pool,
                           std::vector<EntityInfo> entities)
    : limits_(limits), pool_(std::move(pool)), entities_(std::move(entities)) {
  for (const auto& c : pool_) idle_.push_back(c.get());
}

SqliteSource::~SqliteSource() = default;

namespace {
thread_local const std::atomic<bool>* t_cancel = nullptr;
}  // namespace

CancelScope::CancelScope(const std::atomic<bool>* flag) : outer_(t_cancel) { t_cancel = flag; }
CancelScope::~CancelScope() { t_cancel = outer_; }
const std::atomic<bool>* CancelScope::current() { return t_cancel; }


DataResult<SqliteSource::Lease> SqliteSource::acquire() const {
  std::unique_lock lock(pool_mu_);
  // Waiting is bounded like the query itself: a pool busy for longer than
  // a query may run is overloaded, and the caller should hear so.
  if (!pool_cv_.wait_for(lock, limits_.timeout, [&] { return !idle_.empty(); })) {
    return data_error(Kind::timeout, "data source busy", "no idle connection in time");
  }
  // Last in, first out: the warmest statement cache.
  Connection* c = idle_.back();
  idle_.pop_back();
  return Lease(this, c);
}

DataResult<QueryResult> SqliteSource::query(std::string_view sql,
                                            const std::vector<nlohmann::json>& params) const {
  return guarded([&]() -> DataResult<QueryResult> {
    auto lease = acquire();
    if (!lease) return tl::unexpected(std::move(lease.error()));
    return (*lease)->run(sql, params, (*lease)->user_options());
  });
}

DataResult<void> SqliteSource::check(std::string_view sql, std::size_t params) const {
  return guarded([&]() -> DataResult<void> {
    auto lease = acquire();
    if (!lease) return tl::unexpected(std::move(lease.error()));
    return (*lease)->check(sql, params);
  });
}

DataResult<std::vector<EntityInfo>> SqliteSource::entities() const {
  return guarded([&]() -> DataResult<std::vector<EntityInfo>> { return entities_; });
}

DataResult<EntityStats> SqliteSource::describe(const std::string& entity) const {
  return guarded([&]() -> DataResult<EntityStats> {
    // Only names of the snapshot reach SQL, and then only quoted.
    const EntityInfo* info = find_entity(entities_, entity);
    if (!info) {
      return data_error(Kind::not_found, "no such entity",
                        "describe: unknown entity " + valid_utf8(entity.substr(0, 64)));
    }
    // Known, or known to fail lately.
    const auto cached = [&]() -> std::optional<DataResult<EntityStats>> {
      const std::lock_guard lock(stats_mu_);
      if (auto it = stats_.find(info->name); it != stats_.end()) return it->second;
      if (auto it = stats_failed_.find(info->name);
          it != stats_failed_.end() && std::chrono::steady_clock::now() - it->second.second < kStatsRetryAfter) {
        return tl::unexpected(it->second.first);
      }
      return std::nullopt;
    };
    if (auto known = cached()) return *known;
    const std::lock_guard compute(stats_compute_mu_);
    if (auto known = cached()) return *known;  // computed while we waited?
    auto stats = describe_uncached(*info);
    const std::lock_guard lock(stats_mu_);
    if (!stats) {
      // Only the slow case: a lack of memory or a busy file is a moment's.
      if (stats.error().kind == Kind::timeout) {
        stats_failed_.insert_or_assign(info->name, std::pair(stats.error(), std::chrono::steady_clock::now()));
      }
      return stats;
    }
    stats_failed_.erase(info->name);
    stats_.emplace(info->name, *stats);
    return stats;
  });
}

DataResult<EntityStats> SqliteSource::describe_uncached(const EntityInfo& info) const {
  auto lease = acquire();
  if (!lease) return tl::unexpected(std::move(lease.error()));
  return compute_stats(**lease, info, limits_.max_sql_bytes, limits_.stats_timeout);
}

void to_json(Json& j, const Column& c) {
  j = Json{{"name", c.name}, {"type", c.type}, {"not_null", c.not_null},
           {"primary_key", c.primary_key}};
}

void to_json(Json& j, const EntityInfo& e) {
  j = Json{{"name", e.name}, {"kind", e.kind}, {"columns", e.columns}};
}

void to_json(Json& j, const ColumnStats& c) {
  j = Json(c.column);
  j["null_fraction"] = c.null_fraction;
  j["distinct_count"] = c.distinct_count;
}

void to_json(Json& j, const EntityStats& s) {
  j = Json{{"name", s.info.name},        {"kind", s.info.kind},
           {"row_count", s.row_count},   {"columns", s.columns},
           {"approximate", s.approximate}};
}

void to_json(Json& j, const QueryResult& r) {
  j = Json{{"columns", r.columns}, {"rows", r.rows}, {"truncated", r.truncated}};
}

}  // namespace sluice::mcpd
